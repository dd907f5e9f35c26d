// Timestamps (ms since the epoch) of what happens between a page load and the embedding map's first points, for
// benchmarks/embedding_map.py. Runs in the page and in the map widget's iframe before their own scripts.
//   page: every websocket message Streamlit receives (its size), the widget's messages to the page, its captions.
//   widget iframe: the render message carrying the points, the messages to its database worker and their replies,
//   and, on request, the worker's own resource timings (the DuckDB-WASM fetch: when, how long, from the cache?).
(() => {
  const log = (window.__mapLog = []);
  const mark = (what, value) => log.push([Date.now(), what, value === undefined ? null : value]);
  if (window === window.top && window.WebSocket) {
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        mark("ws open");
        this.addEventListener("message", (e) => mark("ws message", e.data.byteLength ?? e.data.size ?? 0));
      }
    };
    window.addEventListener("message", (e) => {
      if (e.data && e.data.isStreamlitMessage) mark("from widget " + e.data.type);
    });
    // the page's captions as they change (the selection's count, the gallery's): when a selection reached the page
    let shown = "";
    new MutationObserver(() => {
      const text = Array.from(document.querySelectorAll('[data-testid="stCaptionContainer"]'), (c) => c.textContent)
        .filter((t) => /points selected on the map|^Gallery:/.test(t))
        .join(" | ");
      if (text !== shown) mark("captions", (shown = text));
    }).observe(document, { subtree: true, childList: true, characterData: true });
  }
  if (window !== window.top) {
    window.addEventListener("message", (e) => {
      if (e.data && e.data.type === "streamlit:render") mark("render");
    });
  }
  const NativeWorker = window.Worker;
  if (!NativeWorker) return;
  const perf = (window.__mapWorkerPerf = []);
  // performance.timeOrigin runs on a monotonic clock that drifts from Date.now(); resource timings are converted with
  // Date.now() - performance.now(), this context's origin on the epoch clock the other marks use.
  // the worker answers {__perf} with its resource timings; the wrapper below keeps that from DuckDB's own handler
  const prelude =
    "self.addEventListener('message', (e) => { if (!e.data || !e.data.__perf) return; e.stopImmediatePropagation();" +
    " const o = Date.now() - performance.now(); postMessage({__perf: performance.getEntriesByType('resource').map((r) =>" +
    " ({name: r.name, start: o + r.startTime, responseStart: o + r.responseStart, end: o + r.responseEnd," +
    " transfer: r.transferSize, body: r.encodedBodySize}))}); });\n";
  window.Worker = function (url, opts) {
    const classic = !(opts && opts.type === "module");
    const src = classic ? URL.createObjectURL(new Blob([prelude + "importScripts(" + JSON.stringify(String(url)) + ");"])) : url;
    const w = new NativeWorker(src, opts);
    const post = w.postMessage.bind(w);
    const sent = new Map();
    w.addEventListener("message", (e) => {
      if (e.data && e.data.__perf) {
        e.stopImmediatePropagation();
        perf.push(...e.data.__perf);
        return;
      }
      const type = e.data && sent.get(e.data.requestId);
      if (type) {
        mark("reply " + type);
        sent.delete(e.data.requestId);
      }
    });
    w.postMessage = (m, t) => {
      if (m && m.type) {
        mark("send " + m.type);
        sent.set(m.messageId, m.type);
      }
      return post(m, t);
    };
    if (classic) window.__mapAskPerf = () => post({ __perf: 1 });
    mark(classic ? "worker created" : "module worker created");
    return w;
  };
  window.Worker.prototype = NativeWorker.prototype;
})();
