/**
 * The web page served at `/`: `page/index.html` (HTML and CSS) and `page/app.js`, plain
 * JavaScript the browser runs as served (no build step, no framework).
 *
 * @module
 */

/** The page's HTML and script, read from this folder. */
export async function loadPage(): Promise<{ html: string; js: string }> {
  const read = (name: string) => Deno.readTextFile(new URL(`./page/${name}`, import.meta.url));
  return { html: await read("index.html"), js: await read("app.js") };
}
