// Gatehouse runtime instrumentation: runs before any plugin code in every frame.
//
// Nothing here is reachable from the page. The report channel (a Playwright binding) is
// captured and deleted from the window before the page runs; every intrinsic the hooks
// rely on is captured too, so a page that later replaces JSON.stringify, Function.prototype
// or the binding cannot silence or forge what is recorded. Integrity checks run when the
// host sets an attribute through the DevTools protocol (not from page script), and their
// report carries a nonce that exists only in this closure: a page can neither stop a check
// nor fake its result. Hooks record and pass through: the plugin behaves as it would for a
// user, and what it tries is what the trace shows. The proxy records the network anyway;
// these hooks add what never reaches the network (reads, DOM changes, code made at run time).
(() => {
  const NONCE = "__GH_NONCE__", CHECK = "data-gh-check";
  // The raw DevTools binding is native code that needs nothing of the page; Playwright's
  // binding (used where the raw one is absent: frames in other processes) is the fallback.
  const raw = window.__ghRaw, viaPlaywright = window.__ghReport;
  try { delete window.__ghRaw; } catch (e) {}
  try { delete window.__ghReport; } catch (e) {}
  const report = typeof raw === "function" ? raw : viaPlaywright;
  if (typeof report !== "function") return;

  // Intrinsics, captured before the page can touch them.
  const RApply = Reflect.apply, RConstruct = Reflect.construct, RGet = Reflect.get, RSet = Reflect.set;
  const ROwnKeys = Reflect.ownKeys, RDefine = Reflect.defineProperty, RDelete = Reflect.deleteProperty;
  const GetDesc = Object.getOwnPropertyDescriptor, DefProp = Object.defineProperty;
  const Stringify = JSON.stringify, FnToString = Function.prototype.toString;
  const DateNow = Date.now, ErrorCtor = Error, WeakMapCtor = WeakMap, ProxyCtor = Proxy;
  const StrSlice = String.prototype.slice, StrLower = String.prototype.toLowerCase;
  const ArrJoin = Array.prototype.join, ArrPush = Array.prototype.push, ArrSlice = Array.prototype.slice;
  const StrSplit = String.prototype.split, RegTest = RegExp.prototype.test, NullObject = Object.create;
  const call = (fn, self, ...args) => RApply(fn, self, args);
  const AddListener = EventTarget.prototype.addEventListener, PreventDefault = Event.prototype.preventDefault;
  const ElClosest = Element.prototype.closest;
  const str = (v) => { try { return String(v); } catch (e) { return "?"; } };
  const cut = (s, n) => call(StrSlice, s, 0, n);

  const MAX = 2000;
  const sample = (v) => {
    try {
      if (v === undefined || v === null) return "";
      if (typeof v === "string") return cut(v, MAX);
      if (v instanceof URLSearchParams) return cut(str(v), MAX);
      if (typeof FormData !== "undefined" && v instanceof FormData) {
        const parts = [];
        for (const [k, val] of v.entries()) call(ArrPush, parts, k + "=" + str(val));
        return cut(call(ArrJoin, parts, "&"), MAX);
      }
      if (v instanceof Blob) return "[blob " + v.size + "]";
      if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return "[binary " + (v.byteLength || 0) + "]";
      return cut(str(Stringify(v)), MAX);
    } catch (e) { return cut(str(v), MAX); }
  };
  const where = () => {
    const lines = call(StrSplit, str(new ErrorCtor().stack || ""), "\n");
    return cut(call(ArrJoin, call(ArrSlice, lines, 2, 6), " | "), 300);
  };
  // Events are null-prototype objects of primitives: no inherited toJSON the page could add.
  const emit = (type, data) => {
    const event = NullObject(null);
    event.type = type;
    try {
      event.t = call(DateNow, Date);
      event.frame = cut(str(location.href), 200);
      event.where = where();
      for (const k of ROwnKeys(data)) event[k] = typeof data[k] === "object" ? sample(data[k]) : data[k];
    } catch (e) { event.degraded = true; }
    try { report(Stringify(event)); } catch (e) {}
  };

  // Storage objects are handed out behind a proxy; hooks unwrap it before calling natives.
  const storages = new WeakMapCtor();  // proxy -> real Storage
  const unwrapStorage = (v) => (v && storages.has(v) ? storages.get(v) : v);
  let realLocal = null;

  // Every hook we put in place, so an integrity check can tell whether it is still there.
  const installed = [];
  const mine = new WeakMapCtor();  // our wrapper -> the original it wraps
  const wrap = (obj, name, before, label) => {
    const orig = obj && obj[name];
    if (typeof orig !== "function") return;
    const wrapped = function (...args) {
      try { call(before, this, args); } catch (e) {}
      return RApply(orig, unwrapStorage(this), args);
    };
    try { DefProp(wrapped, "name", { value: name }); } catch (e) {}
    mine.set(wrapped, orig);
    obj[name] = wrapped;
    call(ArrPush, installed, { label: label || name, obj, name, value: wrapped, accessor: null });
  };
  const hookProperty = (proto, prop, onGet, onSet, label) => {
    const d = GetDesc(proto, prop);
    if (!d || !d.configurable) return;
    const get = d.get && function () { const v = call(d.get, this); try { onGet && call(onGet, this, v); } catch (e) {} return v; };
    const set = d.set && function (v) { try { onSet && call(onSet, this, v); } catch (e) {} return call(d.set, this, v); };
    DefProp(proto, prop, { configurable: true, enumerable: d.enumerable, get, set });
    call(ArrPush, installed, { label: label || prop, obj: proto, name: prop, value: null, accessor: get || set });
  };
  const construct = (name, onConstruct) => {
    const Orig = window[name];
    if (!Orig) return;
    const P = new ProxyCtor(Orig, {
      construct(target, args, newTarget) { try { onConstruct(args); } catch (e) {} return RConstruct(target, args, newTarget === P ? target : newTarget); },
      apply(target, self, args) { try { onConstruct(args); } catch (e) {} return RApply(target, self, args); },
    });
    window[name] = P;
    mine.set(P, Orig);
    call(ArrPush, installed, { label: name, obj: window, name, value: P, accessor: null });
  };

  // Credentials and storage: every way to read them, not only the obvious method.
  hookProperty(Document.prototype, "cookie", () => emit("cookie-read", { api: "document.cookie" }), (v) => emit("cookie-write", { value: sample(v) }));
  if (window.CookieStore) {
    for (const m of ["get", "getAll"]) wrap(CookieStore.prototype, m, () => emit("cookie-read", { api: "cookieStore." + m }), "cookieStore." + m);
  }
  const areaOf = (s) => { try { return s === realLocal ? "local" : "session"; } catch (e) { return "?"; } };
  for (const m of ["getItem", "setItem", "removeItem", "clear", "key"]) {
    wrap(Storage.prototype, m, function (args) {
      emit("storage", { op: m, area: areaOf(unwrapStorage(this)), key: sample(args[0]), value: m === "setItem" ? sample(args[1]) : "" });
    }, "Storage." + m);
  }
  const proxyStorage = (real, area) => {
    const p = new ProxyCtor(real, {
      get(target, prop) {
        const v = RGet(target, prop);
        if (typeof prop === "string" && typeof v !== "function" && prop !== "length") emit("storage", { op: "get", area, key: sample(prop) });
        return v;
      },
      set(target, prop, value) { emit("storage", { op: "set", area, key: sample(str(prop)), value: sample(value) }); return RSet(target, prop, value); },
      deleteProperty(target, prop) { emit("storage", { op: "delete", area, key: sample(str(prop)) }); return RDelete(target, prop); },
      ownKeys(target) { emit("storage", { op: "keys", area, key: "" }); return ROwnKeys(target); },
      getOwnPropertyDescriptor(target, prop) {
        if (typeof prop === "string") emit("storage", { op: "get", area, key: sample(prop) });
        return GetDesc(target, prop);
      },
      defineProperty(target, prop, desc) { emit("storage", { op: "set", area, key: sample(str(prop)) }); return RDefine(target, prop, desc); },
    });
    storages.set(p, real);
    return p;
  };
  for (const [prop, area] of [["localStorage", "local"], ["sessionStorage", "session"]]) {
    const owner = GetDesc(window, prop) ? window : Window.prototype;
    const d = GetDesc(owner, prop);
    if (!d || !d.get || !d.configurable) continue;
    let cached = null;
    const get = function () {
      const real = call(d.get, this === undefined ? window : this);
      if (area === "local") realLocal = real;
      if (!cached || storages.get(cached) !== real) cached = proxyStorage(real, area);
      return cached;
    };
    DefProp(owner, prop, { configurable: true, enumerable: d.enumerable, get });
    call(ArrPush, installed, { label: prop, obj: owner, name: prop, value: null, accessor: get });
  }
  if (window.IDBObjectStore) {
    for (const C of [IDBObjectStore, IDBIndex]) {
      for (const m of ["get", "getAll", "getAllKeys", "openCursor", "openKeyCursor", "count"]) {
        wrap(C.prototype, m, function () {
          const store = this.objectStore || this;
          let db = "";
          try { db = store.transaction.db.name; } catch (e) {}
          emit("storage", { op: "indexedDB." + m, area: "indexedDB", key: sample(db + "/" + store.name) });
        }, C.name + "." + m);
      }
    }
  }
  if (window.indexedDB) wrap(IDBFactory.prototype, "open", (args) => emit("storage", { op: "indexedDB.open", area: "indexedDB", key: sample(args[0]) }), "indexedDB.open");

  // Code made at run time.
  const origEval = window.eval;
  // Playwright evaluates through the page's eval from its UtilityScript: not the plugin.
  // Stack lines: "Error", this function, the eval wrapper, then the wrapper's caller.
  const fromDriver = () => /^\s*at UtilityScript\./.test(str(new ErrorCtor().stack || "").split("\n")[3] || "");
  const evalHook = function (code) { if (!fromDriver()) emit("eval", { code: sample(code) }); return origEval(code); };
  window.eval = evalHook;
  mine.set(evalHook, origEval);
  call(ArrPush, installed, { label: "eval", obj: window, name: "eval", value: evalHook, accessor: null });
  construct("Function", (args) => emit("function", { code: sample(args[args.length - 1]) }));
  // (function(){}).constructor is another way to the Function constructor, and so are the
  // async and generator ones: all of them make code from strings.
  try { Function.prototype.constructor = window.Function; } catch (e) {}
  for (const sample_fn of [async function () {}, function* () {}, async function* () {}]) {
    try {
      const proto = Object.getPrototypeOf(sample_fn);
      const Orig = proto.constructor;
      const P = new ProxyCtor(Orig, {
        construct(target, args, nt) { emit("function", { code: sample(args[args.length - 1]) }); return RConstruct(target, args, nt === P ? target : nt); },
        apply(target, self, args) { emit("function", { code: sample(args[args.length - 1]) }); return RApply(target, self, args); },
      });
      DefProp(proto, "constructor", { value: P, configurable: true, writable: true });
      mine.set(P, Orig);
    } catch (e) {}
  }
  for (const t of ["setTimeout", "setInterval"]) {
    wrap(window, t, (args) => { if (typeof args[0] === "string") emit("string-timer", { code: sample(args[0]) }); });
  }

  // Network sinks, recorded before the proxy or the CSP sees them.
  wrap(window, "fetch", (args) => {
    const input = args[0];
    const url = typeof input === "string" ? input : (input && input.url) || str(input);
    const init = args[1] || {};
    emit("request", { api: "fetch", url: sample(url), method: sample(init.method || "GET"), body: sample(init.body) });
  });
  const xhrTarget = new WeakMapCtor();
  wrap(XMLHttpRequest.prototype, "open", function (args) { xhrTarget.set(this, [str(args[0]), str(args[1])]); }, "XMLHttpRequest.open");
  wrap(XMLHttpRequest.prototype, "send", function (args) {
    const [method, url] = xhrTarget.get(this) || ["", ""];
    emit("request", { api: "xhr", url: sample(url), method: sample(method), body: sample(args[0]) });
  }, "XMLHttpRequest.send");
  if (navigator.sendBeacon) {
    wrap(Navigator.prototype, "sendBeacon", (args) => emit("request", { api: "beacon", url: sample(args[0]), method: "POST", body: sample(args[1]) }), "sendBeacon");
  }
  construct("WebSocket", (args) => emit("request", { api: "WebSocket", url: sample(args[0]) }));
  construct("EventSource", (args) => emit("request", { api: "EventSource", url: sample(args[0]) }));
  if (window.WebSocket) wrap(WebSocket.prototype, "send", function (args) { emit("request", { api: "websocket-send", url: sample(this.url), body: sample(args[0]) }); }, "WebSocket.send");
  for (const [proto, prop] of [[HTMLImageElement.prototype, "src"], [HTMLScriptElement.prototype, "src"], [HTMLIFrameElement.prototype, "src"], [HTMLFormElement.prototype, "action"], [HTMLLinkElement.prototype, "href"]]) {
    hookProperty(proto, prop, null, function (v) { emit("element-url", { tag: call(StrLower, this.tagName), prop, url: sample(v) }); }, proto.constructor.name + "." + prop);
  }
  wrap(Element.prototype, "setAttribute", function (args) {
    const n = call(StrLower, str(args[0]));
    if ((n === "src" || n === "action" || n === "href") && /^(script|img|iframe|form|link)$/i.test(this.tagName)) {
      emit("element-url", { tag: call(StrLower, this.tagName), prop: n, url: sample(args[1]) });
    }
  }, "Element.setAttribute");
  wrap(Document.prototype, "createElement", (args) => {
    const tag = call(StrLower, str(args[0]));
    if (tag === "script" || tag === "iframe" || tag === "object" || tag === "embed") emit("create-element", { tag });
  }, "createElement");
  wrap(Document.prototype, "write", (args) => emit("document-write", { html: sample(call(ArrJoin, args, "")) }), "document.write");

  // WebRTC could reach the network past the proxy: record the attempt and refuse it.
  for (const C of ["RTCPeerConnection", "webkitRTCPeerConnection"]) {
    if (!window[C]) continue;
    const P = new ProxyCtor(window[C], { construct() {
      emit("webrtc", {});
      throw new DOMException("WebRTC is blocked in the sandbox", "NotAllowedError");
    } });
    window[C] = P;
    call(ArrPush, installed, { label: C, obj: window, name: C, value: P, accessor: null });
  }

  // Listeners on the whole page.
  wrap(EventTarget.prototype, "addEventListener", function (args) {
    const t = this === window ? "window" : this === document ? "document" : this === document.documentElement ? "html" : this === document.body ? "body" : null;
    if (t) emit("page-listener", { event: str(args[0]), target: t });
  }, "addEventListener");

  // Background code and miners.
  construct("Worker", (args) => emit("worker", { kind: "Worker", url: sample(str(args[0])) }));
  construct("SharedWorker", (args) => emit("worker", { kind: "SharedWorker", url: sample(str(args[0])) }));
  if (window.WebAssembly) {
    for (const m of ["instantiate", "instantiateStreaming", "compile", "compileStreaming"]) wrap(WebAssembly, m, () => emit("wasm", { op: m }), "WebAssembly." + m);
  }
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) emit("long-task", { duration: Math.round(e.duration) });
    }).observe({ type: "longtask", buffered: true });
  } catch (e) {}

  // Navigation, clipboard, messaging.
  wrap(window, "open", (args) => emit("navigation", { api: "window.open", url: sample(args[0]) }), "window.open");
  wrap(History.prototype, "pushState", (args) => emit("navigation", { api: "history.pushState", url: sample(args[2]) }), "pushState");
  wrap(History.prototype, "replaceState", (args) => emit("navigation", { api: "history.replaceState", url: sample(args[2]) }), "replaceState");
  if (window.Clipboard) {
    for (const m of ["readText", "read", "writeText", "write"]) wrap(Clipboard.prototype, m, (args) => emit("clipboard", { op: m, value: sample(args[0]) }), "clipboard." + m);
  }
  wrap(Document.prototype, "execCommand", (args) => emit("clipboard", { op: "execCommand:" + str(args[0]) }), "execCommand");
  wrap(window, "postMessage", (args) => emit("post-message", { data: sample(args[0]), target: sample(args[1]) }), "postMessage");

  // Evidence from the browser itself (our own listeners go around our hook).
  call(AddListener, document, "securitypolicyviolation", (e) => emit("csp-violation", { directive: e.effectiveDirective, blocked: sample(e.blockedURI), sample: sample(e.sample) }), true);
  call(AddListener, window, "error", (e) => emit("error", { message: sample(e.message), source: sample(e.filename) }), true);
  call(AddListener, window, "unhandledrejection", (e) => emit("error", { message: sample(e.reason && (e.reason.stack || e.reason.message || e.reason)) }));
  // The host's own forms stay on the page when submitted, as a single-page app's do; the
  // submit event itself is the browser's, trusted, and every listener still gets it.
  call(AddListener, document, "submit", (e) => {
    try { if (e.target && call(ElClosest, e.target, "[data-gatehouse-host]")) call(PreventDefault, e); } catch (err) {}
  }, true);

  // Integrity: is every hook still ours? A value that is not ours is either the plugin's
  // own wrapper (an override) or a native function put back (our hook removed: tampering).
  const NATIVE = /\{\s*\[native code\]\s*\}\s*$/;
  const isNative = (fn) => { try { return call(RegTest, NATIVE, call(FnToString, fn)); } catch (e) { return false; } };
  const check = (challenge) => {
    const overrides = [], tampered = [];
    for (const h of installed) {
      let now;
      try {
        if (h.accessor) {
          const d = GetDesc(h.obj, h.name);
          now = d ? (d.get || d.set) : undefined;
          if (now !== h.accessor) call(ArrPush, tampered, h.label);
          continue;
        }
        now = h.obj[h.name];
      } catch (e) { call(ArrPush, tampered, h.label); continue; }
      if (now === h.value) continue;
      if (typeof now === "function" && !isNative(now) && !mine.has(now)) call(ArrPush, overrides, h.label);
      else call(ArrPush, tampered, h.label);
    }
    for (const name of overrides) emit("override", { name });
    emit("check", { nonce: NONCE, challenge, hooks: installed.length, overrides: call(ArrJoin, overrides, ","), tampered: call(ArrJoin, tampered, ",") });
  };

  // DOM changes outside the container. The host page is ours and fixed: everything up to
  // and including #plugin-root is the host's own parsing, and the entry script element
  // right after it is ours too. Records are handled in order, so readiness cannot be
  // skipped or faked by the page, however late this callback runs. The integrity check
  // request is found first, with captured accessors, and each record is handled on its
  // own: a page that makes one record throw cannot make the check disappear.
  const getter = (proto, name) => { const d = GetDesc(proto, name); return d && d.get; };
  const MR = MutationRecord.prototype;
  const recType = getter(MR, "type"), recTarget = getter(MR, "target"), recAttr = getter(MR, "attributeName");
  const docElement = getter(Document.prototype, "documentElement"), getAttr = Element.prototype.getAttribute;
  let ready = false, root = null, entrySeen = false;
  const handle = (r) => {
    if (!ready) {
      for (const n of r.addedNodes || []) if (n.id === "plugin-root") { ready = true; root = n; }
      return;
    }
    const added = [];
    for (const n of r.addedNodes || []) {
      if (!entrySeen && n.tagName === "SCRIPT" && n.hasAttribute("data-gatehouse-entry")) { entrySeen = true; continue; }
      if (n.isConnected && !(n.nodeType === 3 && !n.textContent.trim())) call(ArrPush, added, n);
    }
    if (root && (r.target === root || root.contains(r.target))) return;
    if (r.type === "childList" && added.length === 0) return;
    // CSS: style sheets added to the page, or text written into one (how widgets ship CSS).
    const styles = r.target.tagName === "STYLE" ||
      (added.length > 0 && added.every((n) => n.tagName === "STYLE" || (n.tagName === "LINK" && /stylesheet/i.test(n.rel || ""))));
    emit("dom-outside", {
      kind: styles ? "style" : r.type,
      target: call(StrLower, str(r.target.tagName || "#text")) + (r.target.id ? "#" + r.target.id : ""),
      added: sample(call(ArrJoin, added.map((n) => cut(str(n.outerHTML || n.textContent || ""), 300)), " ")),
      attribute: r.attributeName || "",
    });
  };
  const observer = new MutationObserver((records) => {
    let challenge = null;
    for (const r of records) {
      try {
        const html = call(docElement, document);
        if (call(recType, r) === "attributes" && call(recAttr, r) === CHECK && call(recTarget, r) === html) {
          challenge = str(call(getAttr, html, CHECK));
        }
      } catch (e) {}
    }
    for (const r of records) {
      try {
        if (call(recAttr, r) !== CHECK) handle(r);
      } catch (e) { emit("observer-error", { message: sample(str(e)) }); }
    }
    if (challenge !== null) check(challenge);
  });
  observer.observe(document, { childList: true, subtree: true, attributes: true, characterData: true });
})();
