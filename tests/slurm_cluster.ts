/**
 * A one-node Slurm cluster for tests, started from Debian's `slurm-wlm` and `munge` in a
 * temporary folder: a generated munge key and munged on its own socket, then slurmctld and
 * slurmd (in the foreground, as children of the test) with a generated slurm.conf on free
 * localhost ports. `stop()` cancels what is left in the queue, stops each daemon by its pid and
 * removes the folder.
 *
 * @module
 */

const DAEMONS = ["mungekey", "munged", "slurmctld", "slurmd"];
const CLIENTS = ["sbatch", "squeue", "scontrol", "scancel", "sinfo"];

function findExecutable(name: string): string | null {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin", "/usr/bin"];
  for (const d of dirs) {
    if (!d) continue;
    try {
      const st = Deno.statSync(`${d}/${name}`);
      if (st.isFile && (st.mode ?? 0o111) & 0o111) return `${d}/${name}`;
    } catch { /* not here */ }
  }
  return null;
}

/** Why no cluster can be started here (missing programs), or null. */
export function slurmMissing(): string | null {
  const missing = [...DAEMONS, ...CLIENTS].filter((n) => !findExecutable(n));
  return missing.length
    ? `Slurm/munge not installed (missing ${
      missing.join(", ")
    }; Debian: apt-get install slurm-wlm munge)`
    : null;
}

/** A running test cluster. */
export interface SlurmCluster {
  /** Its temporary folder. */
  dir: string;
  /** The generated slurm.conf. */
  conf: string;
  /** Environment for client commands and launchers (`SLURM_CONF`). */
  env: Record<string, string>;
  /** Runs a Slurm client command against this cluster. */
  client(cmd: string, args: string[]): Promise<{ code: number; out: string }>;
  /** Cancels every job, stops the daemons by pid, removes the folder. */
  stop(): Promise<void>;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function waitFor(what: string, check: () => Promise<boolean>, seconds: number) {
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${seconds} s waiting for ${what}`);
}

async function tail(path: string, lines = 15): Promise<string> {
  const t = await Deno.readTextFile(path).catch(() => "");
  return `--- ${path}\n${t.trimEnd().split("\n").slice(-lines).join("\n")}`;
}

async function stopChild(p: Deno.ChildProcess): Promise<void> {
  try {
    p.kill("SIGTERM");
  } catch { /* already gone */ }
  const timer = setTimeout(() => {
    try {
      p.kill("SIGKILL");
    } catch { /* gone */ }
  }, 10_000);
  await p.status;
  clearTimeout(timer);
}

/** Starts munged, slurmctld and slurmd; throws (having cleaned up) when they do not come up. */
export async function startCluster(): Promise<SlurmCluster> {
  const dir = await Deno.makeTempDir({ prefix: "lf_slurm_" });
  // munged insists that every folder above its socket is searchable by all.
  await Deno.chmod(dir, 0o755);
  for (const d of ["munge", "ctld", "spool", "log"]) await Deno.mkdir(`${dir}/${d}`);
  await Deno.chmod(`${dir}/munge`, 0o755);
  const children: Deno.ChildProcess[] = [];
  const conf = `${dir}/slurm.conf`;
  const env = { SLURM_CONF: conf };
  const dec = new TextDecoder();
  const client = async (cmd: string, args: string[]) => {
    const r = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" }).output();
    return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
  };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (children.length === 3) {
      // Running jobs first, so that no slurmstepd outlives the daemons.
      await client("scancel", ["--me"]).catch(() => {});
      await waitFor("the queue to empty", async () => {
        const r = await client("squeue", ["-h", "--me", "-o", "%i"]);
        return r.code !== 0 || r.out.trim() === "";
      }, 30).catch(() => {});
    }
    for (const p of children.reverse()) await stopChild(p);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    const key = `${dir}/munge/munge.key`;
    const mk = await new Deno.Command("mungekey", {
      args: ["--create", `--keyfile=${key}`],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (mk.code !== 0) throw new Error(`mungekey: ${dec.decode(mk.stderr)}`);
    const socket = `${dir}/munge/munge.socket`;
    children.push(
      new Deno.Command("munged", {
        args: [
          "--foreground",
          "--force",
          `--socket=${socket}`,
          `--key-file=${key}`,
          `--log-file=${dir}/munge/munged.log`,
          `--pid-file=${dir}/munge/munged.pid`,
          `--seed-file=${dir}/munge/munged.seed`,
        ],
        stdout: "null",
        stderr: "null",
      }).spawn(),
    );
    await waitFor("munged's socket", () => Deno.stat(socket).then(() => true, () => false), 10);
    const host = Deno.hostname().split(".")[0];
    const id = await new Deno.Command("id", { args: ["-un"], stdout: "piped" }).output();
    const user = dec.decode(id.stdout).trim() || "root";
    const cpus = navigator.hardwareConcurrency;
    await Deno.writeTextFile(
      conf,
      [
        "ClusterName=lftest",
        `SlurmctldHost=${host}(127.0.0.1)`,
        `SlurmctldPort=${freePort()}`,
        `SlurmdPort=${freePort()}`,
        `SlurmUser=${user}`,
        `SlurmdUser=${user}`,
        "AuthType=auth/munge",
        "CredType=cred/munge",
        `AuthInfo=socket=${socket}`,
        `StateSaveLocation=${dir}/ctld`,
        `SlurmdSpoolDir=${dir}/spool`,
        `SlurmctldPidFile=${dir}/slurmctld.pid`,
        `SlurmdPidFile=${dir}/slurmd.pid`,
        `SlurmctldLogFile=${dir}/log/slurmctld.log`,
        `SlurmdLogFile=${dir}/log/slurmd.log`,
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "JobAcctGatherType=jobacct_gather/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "InactiveLimit=0",
        "KillWait=5",
        "MinJobAge=300",
        `NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} State=UNKNOWN`,
        `PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP`,
        "",
      ].join("\n"),
    );
    for (const [cmd, extra] of [["slurmctld", []], ["slurmd", ["-N", host]]] as const) {
      children.push(
        new Deno.Command(cmd, {
          args: ["-D", "-f", conf, ...extra],
          env,
          stdout: "null",
          stderr: "null",
        }).spawn(),
      );
    }
    await waitFor("the node to be idle", async () => {
      const r = await client("sinfo", ["-h", "-o", "%t"]);
      return r.code === 0 && r.out.trim() === "idle";
    }, 30);
  } catch (e) {
    const logs = await Promise.all(
      ["munge/munged.log", "log/slurmctld.log", "log/slurmd.log"].map((f) => tail(`${dir}/${f}`)),
    );
    await stop();
    throw new Error(`Slurm did not start: ${(e as Error).message}\n${logs.join("\n")}`);
  }
  return { dir, conf, env, client, stop };
}
