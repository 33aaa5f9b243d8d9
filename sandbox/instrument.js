// Gatehouse runtime instrumentation: runs before any plugin code in every frame.
// Every hook reports through a binding captured here, so a plugin that later replaces or
// deletes window.__ghReport cannot silence it. Hooks record and pass through: the plugin
// behaves as it would for a user, and what it tries is what the trace shows.
(() => {
  const report = window.__ghReport;
  try { delete window.__ghReport; } catch (e) {}
  if (typeof report !== "function") return;
  const MAX = 2000;
  const sample = (v) => {
    try {
      if (v === undefined || v === null) return "";
      if (typeof v === "string") return v.slice(0, MAX);
      if (v instanceof URLSearchParams) return v.toString().slice(0, MAX);
      if (typeof FormData !== "undefined" && v instanceof FormData) {
        const parts = [];
        for (const [k, val] of v.entries()) parts.push(k + "=" + String(val));
        return parts.join("&").slice(0, MAX);
      }
      if (v instanceof Blob) return "[blob " + v.size + "]";
      if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return "[binary " + (v.byteLength || 0) + "]";
      return JSON.stringify(v).slice(0, MAX);
    } catch (e) { return String(v).slice(0, MAX); }
  };
  const stackOrigin = () => {
    const s = (new Error().stack || "").split("\n").slice(2, 6).join(" | ");
    return s.slice(0, 300);
  };
  const emit = (type, data) => {
    try { report(JSON.stringify({ type, t: Date.now(), frame: location.href.slice(0, 200), where: stackOrigin(), ...data })); } catch (e) {}
  };
  const wrap = (obj, name, before) => {
    const orig = obj && obj[name];
    if (typeof orig !== "function") return orig;
    const wrapped = function (...args) {
      try { before.call(this, args); } catch (e) {}
      return orig.apply(this, args);
    };
    try { Object.defineProperty(wrapped, "name", { value: name }); } catch (e) {}
    try { wrapped.toString = () => orig.toString(); } catch (e) {}
    obj[name] = wrapped;
    return wrapped;
  };
  const hookProperty = (proto, prop, onGet, onSet) => {
    const d = Object.getOwnPropertyDescriptor(proto, prop);
    if (!d || !d.configurable) return;
    Object.defineProperty(proto, prop, {
      configurable: true, enumerable: d.enumerable,
      get: d.get && function () { const v = d.get.call(this); try { onGet && onGet.call(this, v); } catch (e) {} return v; },
      set: d.set && function (v) { try { onSet && onSet.call(this, v); } catch (e) {} return d.set.call(this, v); },
    });
  };

  // Credentials and storage.
  hookProperty(Document.prototype, "cookie", () => emit("cookie-read", {}), (v) => emit("cookie-write", { value: sample(v) }));
  for (const m of ["getItem", "setItem", "removeItem", "clear", "key"]) {
    wrap(Storage.prototype, m, function (args) {
      emit("storage", { op: m, area: this === window.localStorage ? "local" : "session", key: sample(args[0]), value: sample(args[1]) });
    });
  }
  if (window.indexedDB) wrap(window.indexedDB, "open", (args) => emit("storage", { op: "indexedDB.open", key: sample(args[0]) }));

  // Code made at run time.
  const origEval = window.eval;
  // Playwright evaluates through the page's eval from its UtilityScript: not the plugin.
  // Stack lines: "Error", this function, the eval wrapper, then the wrapper's caller.
  const fromDriver = () => /^\s*at UtilityScript\./.test((new Error().stack || "").split("\n")[3] || "");
  window.eval = function (code) { if (!fromDriver()) emit("eval", { code: sample(code) }); return origEval(code); };
  const OrigFunction = window.Function;
  const FunctionProxy = new Proxy(OrigFunction, {
    apply(target, self, args) { emit("function", { code: sample(args[args.length - 1]) }); return Reflect.apply(target, self, args); },
    construct(target, args) { emit("function", { code: sample(args[args.length - 1]) }); return Reflect.construct(target, args); },
  });
  window.Function = FunctionProxy;
  for (const t of ["setTimeout", "setInterval"]) {
    wrap(window, t, (args) => { if (typeof args[0] === "string") emit("string-timer", { code: sample(args[0]) }); });
  }

  // Network sinks, recorded before CSP or the router decide.
  wrap(window, "fetch", (args) => {
    const input = args[0];
    const url = typeof input === "string" ? input : (input && input.url) || String(input);
    const init = args[1] || {};
    emit("request", { api: "fetch", url: sample(url), method: sample(init.method || "GET"), body: sample(init.body) });
  });
  wrap(XMLHttpRequest.prototype, "open", function (args) { this.__ghUrl = String(args[1]); this.__ghMethod = String(args[0]); });
  wrap(XMLHttpRequest.prototype, "send", function (args) {
    emit("request", { api: "xhr", url: sample(this.__ghUrl), method: sample(this.__ghMethod), body: sample(args[0]) });
  });
  if (navigator.sendBeacon) {
    wrap(Navigator.prototype, "sendBeacon", (args) => emit("request", { api: "beacon", url: sample(args[0]), method: "POST", body: sample(args[1]) }));
  }
  for (const C of ["WebSocket", "EventSource"]) {
    const Orig = window[C];
    if (!Orig) continue;
    window[C] = new Proxy(Orig, { construct(target, args) { emit("request", { api: C, url: sample(args[0]) }); return Reflect.construct(target, args); } });
  }
  if (window.WebSocket) wrap(WebSocket.prototype, "send", function (args) { emit("request", { api: "websocket-send", url: sample(this.url), body: sample(args[0]) }); });
  for (const [proto, prop] of [[HTMLImageElement.prototype, "src"], [HTMLScriptElement.prototype, "src"], [HTMLIFrameElement.prototype, "src"], [HTMLFormElement.prototype, "action"], [HTMLLinkElement.prototype, "href"]]) {
    hookProperty(proto, prop, null, function (v) { emit("element-url", { tag: this.tagName.toLowerCase(), prop, url: sample(v) }); });
  }
  const origSetAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    try {
      const n = String(name).toLowerCase();
      if ((n === "src" || n === "action" || n === "href") && /^(script|img|iframe|form|link)$/i.test(this.tagName)) {
        emit("element-url", { tag: this.tagName.toLowerCase(), prop: n, url: sample(value) });
      }
    } catch (e) {}
    return origSetAttribute.call(this, name, value);
  };
  wrap(Document.prototype, "createElement", (args) => {
    const tag = String(args[0]).toLowerCase();
    if (tag === "script" || tag === "iframe" || tag === "object" || tag === "embed") emit("create-element", { tag });
  });
  wrap(Document.prototype, "write", (args) => emit("document-write", { html: sample(args.join("")) }));

  // WebRTC could reach the network past the router: record the attempt and refuse it.
  for (const C of ["RTCPeerConnection", "webkitRTCPeerConnection"]) {
    if (!window[C]) continue;
    window[C] = new Proxy(window[C], { construct(target, args) {
      emit("webrtc", { config: sample(args[0]) });
      throw new DOMException("WebRTC is blocked in the sandbox", "NotAllowedError");
    } });
  }

  // Listeners on the whole page.
  const pageTargets = () => [window, document, document.documentElement, document.body];
  wrap(EventTarget.prototype, "addEventListener", function (args) {
    if (pageTargets().includes(this)) emit("page-listener", { event: String(args[0]), target: this === window ? "window" : this === document ? "document" : "body" });
  });

  // Background code and miners.
  for (const C of ["Worker", "SharedWorker"]) {
    const Orig = window[C];
    if (!Orig) continue;
    window[C] = new Proxy(Orig, { construct(target, args) { emit("worker", { kind: C, url: sample(String(args[0])) }); return Reflect.construct(target, args); } });
  }
  if (window.WebAssembly) {
    for (const m of ["instantiate", "instantiateStreaming", "compile", "compileStreaming"]) wrap(WebAssembly, m, () => emit("wasm", { op: m }));
  }
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) emit("long-task", { duration: Math.round(e.duration) });
    }).observe({ type: "longtask", buffered: true });
  } catch (e) {}

  // Navigation, clipboard, messaging.
  wrap(window, "open", (args) => emit("navigation", { api: "window.open", url: sample(args[0]) }));
  wrap(History.prototype, "pushState", (args) => emit("navigation", { api: "history.pushState", url: sample(args[2]) }));
  wrap(History.prototype, "replaceState", (args) => emit("navigation", { api: "history.replaceState", url: sample(args[2]) }));
  if (navigator.clipboard) {
    for (const m of ["readText", "read", "writeText", "write"]) wrap(Clipboard.prototype, m, (args) => emit("clipboard", { op: m, value: sample(args[0]) }));
  }
  wrap(Document.prototype, "execCommand", (args) => emit("clipboard", { op: "execCommand:" + String(args[0]) }));
  wrap(window, "postMessage", (args) => emit("post-message", { data: sample(args[0]), target: sample(args[1]) }));

  // Evidence from the browser itself.
  document.addEventListener("securitypolicyviolation", (e) => emit("csp-violation", { directive: e.effectiveDirective, blocked: sample(e.blockedURI), sample: sample(e.sample) }), true);
  window.addEventListener("error", (e) => emit("error", { message: sample(e.message), source: sample(e.filename) }), true);
  window.addEventListener("unhandledrejection", (e) => emit("error", { message: sample(e.reason && (e.reason.stack || e.reason.message || e.reason)) }));

  // Which globals a plugin replaced: compared after it ran. WebSocket is left out:
  // Playwright's WebSocket routing replaces it itself.
  const pristine = {
    fetch: window.fetch, open: XMLHttpRequest.prototype.open, send: XMLHttpRequest.prototype.send,
    addEventListener: EventTarget.prototype.addEventListener, sendBeacon: Navigator.prototype.sendBeacon,
    submit: HTMLFormElement.prototype.submit, XMLHttpRequest: window.XMLHttpRequest,
  };
  window.__ghCheckOverrides = () => {
    const now = {
      fetch: window.fetch, open: XMLHttpRequest.prototype.open, send: XMLHttpRequest.prototype.send,
      addEventListener: EventTarget.prototype.addEventListener, sendBeacon: Navigator.prototype.sendBeacon,
      submit: HTMLFormElement.prototype.submit, XMLHttpRequest: window.XMLHttpRequest,
    };
    for (const k of Object.keys(pristine)) if (now[k] !== pristine[k]) emit("override", { name: k });
  };

  // DOM changes outside the container. Records count only after the host page sets its
  // ready marker (just before the plugin's script), so the page's own parsing is not noise.
  let ready = false;
  let root = null;
  new MutationObserver((records) => {
    for (const r of records) {
      if (!ready) {
        if (r.type === "attributes" && r.attributeName === "data-gh-ready") {
          ready = true;
          root = document.getElementById("plugin-root");
        }
        continue;
      }
      if (root && (r.target === root || root.contains(r.target))) continue;
      // Nodes gone again by now were feature tests (append, measure, remove): not a change.
      const added = Array.from(r.addedNodes || []).filter((n) =>
        n.isConnected && !(n.hasAttribute && n.hasAttribute("data-gatehouse-host")) && !(n.nodeType === 3 && !n.textContent.trim()));
      if (r.type === "childList" && added.length === 0) continue;
      // CSS: style sheets added to the page, or text written into one (how widgets ship CSS).
      const styles = r.target.tagName === "STYLE" ||
        (added.length > 0 && added.every((n) => n.tagName === "STYLE" || (n.tagName === "LINK" && /stylesheet/i.test(n.rel || ""))));
      emit("dom-outside", {
        kind: styles ? "style" : r.type,
        target: (r.target.tagName || "#text").toLowerCase() + (r.target.id ? "#" + r.target.id : ""),
        added: sample(added.map((n) => (n.outerHTML || n.textContent || "").slice(0, 300)).join(" ")),
        attribute: r.attributeName || "",
      });
    }
  }).observe(document, { childList: true, subtree: true, attributes: true, characterData: true });
})();
