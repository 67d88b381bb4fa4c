/**
 * Messages between the page and its engine worker. Every request carries an id; the worker
 * answers with events for that id (progress, tokens, steps) and then one `done` or `error`.
 *
 * @module
 */
import type {
  Decoded,
  DecodeSettings,
  EngineInfo,
  TrainSettings,
  TrainStep,
} from "./engine_core.ts";

/** A request from the page. */
export type Request =
  | { op: "init"; backend: string; threads?: number }
  | { op: "loadModel"; url: string }
  | { op: "loadPrefix"; url: string | null; format: "prefix" | "peft" }
  | { op: "loadPrefixFiles"; config: string; safetensors: Uint8Array; format: "prefix" | "peft" }
  | { op: "decode"; mr: string; settings: DecodeSettings }
  | { op: "train"; text: string; source: string; settings: TrainSettings }
  | { op: "useTrained" }
  | { op: "stop" }
  | { op: "export"; format: "prefix" | "peft" };

/** An event from the worker about request `id`. */
export type Event =
  | { id: number; type: "progress"; loaded: number; total: number }
  | { id: number; type: "tokens"; tokens: number[]; text: string }
  | { id: number; type: "step"; step: TrainStep }
  | { id: number; type: "done"; result: unknown }
  | { id: number; type: "error"; message: string };

/** Results of the requests, by op. */
export interface Results {
  /** Backend chosen. */
  init: EngineInfo;
  /** Model sizes. */
  loadModel: { nLayer: number; nEmbd: number; nHead: number; parameters: number; ms: number };
  /** Prefix length, or null. */
  loadPrefix: { prefixLen: number } | null;
  /** Prefix length. */
  loadPrefixFiles: { prefixLen: number };
  /** The decoded MR. */
  decode: Decoded;
  /** Step records. */
  train: TrainStep[];
  /** Prefix length of the trained prefix now in use. */
  useTrained: { prefixLen: number };
  /** Nothing. */
  stop: null;
  /** File name → contents. */
  export: Record<string, Uint8Array | string>;
}
