// Gatehouse runtime instrumentation: runs before any plugin code in every frame.
//
// Nothing here is reachable from the page, and nothing here is visible to it. Reports go
// through a raw DevTools binding (native code), captured and deleted from the window before
// the page runs; every intrinsic the hooks rely on is captured too, so a page that later
// replaces JSON.stringify, Function.prototype or Map cannot silence or forge a report.
// Hooks are proxies of the natives they wrap and say so when asked (toString), so a plugin
// that checks for instrumentation before stealing finds none. The host drives integrity
// checks and simulated time by calling a listener of ours through the DevTools protocol
// (an event type only it knows): page script can neither see, call, stop nor fake them.
// Hooks record and pass through: the plugin behaves as it would for a user. The proxy
// records the network anyway; these hooks add what never reaches it (reads, DOM changes,
// code made at run time).
(() => {
  // Strict: a plugin's stack trace hides the function and receiver of every frame of ours
  // (CallSite getFunction/getThis), so it cannot take a command's nonce off the stack.
  "use strict";
  const NONCE = "__GH_NONCE__", CHANNEL = "__GH_CHANNEL__";
  const report = window.__ghRaw;
  try { delete window.__ghRaw; } catch (e) {}
  // No binding here (a frame of another origin, in another process): it cannot reach the
  // host's data either; the proxy still sees its traffic.
  if (typeof report !== "function") return;

  // Intrinsics, captured before the page can touch them.
  const RApply = Reflect.apply, RConstruct = Reflect.construct, RGet = Reflect.get, RSet = Reflect.set;
  const ROwnKeys = Reflect.ownKeys, RDefine = Reflect.defineProperty, RDelete = Reflect.deleteProperty;
  const GetDesc = Object.getOwnPropertyDescriptor, DefProp = Object.defineProperty;
  const Stringify = JSON.stringify, FnToString = Function.prototype.toString, StringCtor = String;
  const DateNow = Date.now, ErrorCtor = Error, WeakMapCtor = WeakMap, ProxyCtor = Proxy;
  const StrSlice = String.prototype.slice, StrLower = String.prototype.toLowerCase;
  const ArrJoin = Array.prototype.join, ArrSlice = Array.prototype.slice;
  const StrSplit = String.prototype.split, RegTest = RegExp.prototype.test, NullObject = Object.create;
  const MapCtor = Map, MapGet = Map.prototype.get, MapSet = Map.prototype.set, MapDelete = Map.prototype.delete;
  const MapHas = Map.prototype.has, MapForEach = Map.prototype.forEach, MathMax = Math.max, MathMin = Math.min;
  const MessageChannelCtor = MessageChannel, PortPost = MessagePort.prototype.postMessage;
  const Port1 = GetDesc(MessageChannel.prototype, "port1").get;
  const Port2 = GetDesc(MessageChannel.prototype, "port2").get;
  const SetOnMessage = GetDesc(MessagePort.prototype, "onmessage").set;
  const GetById = Document.prototype.getElementById, DocQueryAll = Document.prototype.querySelectorAll;
  const ListLength = GetDesc(NodeList.prototype, "length").get, ListItem = NodeList.prototype.item;
  const GetAttr = Element.prototype.getAttribute, Contains = Node.prototype.contains;
  const StrIncludes = String.prototype.includes;
  const WMGet = WeakMap.prototype.get, WMSet = WeakMap.prototype.set, WMHas = WeakMap.prototype.has;
  const call = (fn, self, ...args) => RApply(fn, self, args);
  // Arrays handed to the host are filled by definition, not assignment: a setter the page
  // put on Array.prototype (an index, or a Proxy prototype) never sees or changes them.
  const push = (arr, v) => { DefProp(arr, arr.length, { value: v, writable: true, enumerable: true, configurable: true }); };
  const AddListener = EventTarget.prototype.addEventListener, PreventDefault = Event.prototype.preventDefault;
  const str = (v) => { try { return StringCtor(v); } catch (e) { return "?"; } };
  const cut = (s, n) => call(StrSlice, s, 0, n);

  const MAX = 2000;
  const sample = (v) => {
    try {
      if (v === undefined || v === null) return "";
      if (typeof v === "string") return cut(v, MAX);
      if (v instanceof URLSearchParams) return cut(str(v), MAX);
      if (typeof FormData !== "undefined" && v instanceof FormData) {
        const parts = [];
        for (const [k, val] of v.entries()) push(parts, k + "=" + str(val));
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
  let emitted = 0;  // how many events so far: the clock asks whether a timer did anything
  const emit = (type, data) => {
    emitted += 1;
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
  const unwrapStorage = (v) => (v && call(WMHas, storages, v) ? call(WMGet, storages, v) : v);
  let realLocal = null;

  // Every hook we put in place, so an integrity check can tell whether it is still there.
  const installed = [];
  const mine = new WeakMapCtor();  // our wrapper -> the original it wraps
  // A hook is a proxy of the native it wraps: same name, length and prototype, and (with the
  // toString hook below) the same source text.
  const disguise = (orig, apply) => {
    const hook = new ProxyCtor(orig, { apply });
    call(WMSet, mine, hook, orig);
    return hook;
  };
  const wrap = (obj, name, before, label) => {
    const orig = obj && obj[name];
    if (typeof orig !== "function") return;
    const wrapped = disguise(orig, (target, self, args) => {
      try { call(before, self, args); } catch (e) {}
      return RApply(target, unwrapStorage(self), args);
    });
    obj[name] = wrapped;
    push(installed, { label: label || name, obj, name, value: wrapped, accessor: null });
  };
  const hookProperty = (proto, prop, onGet, onSet, label) => {
    const d = GetDesc(proto, prop);
    if (!d || !d.configurable) return;
    const get = d.get && disguise(d.get, (target, self, args) => {
      const v = RApply(target, self, args);
      try { onGet && call(onGet, self, v); } catch (e) {}
      return v;
    });
    const set = d.set && disguise(d.set, (target, self, args) => {
      try { onSet && call(onSet, self, args[0]); } catch (e) {}
      return RApply(target, self, args);
    });
    DefProp(proto, prop, { configurable: true, enumerable: d.enumerable, get, set });
    push(installed, { label: label || prop, obj: proto, name: prop, value: null, accessor: get || set });
  };
  const construct = (name, onConstruct) => {
    const Orig = window[name];
    if (!Orig) return;
    const P = new ProxyCtor(Orig, {
      construct(target, args, newTarget) { try { onConstruct(args); } catch (e) {} return RConstruct(target, args, newTarget === P ? target : newTarget); },
      apply(target, self, args) { try { onConstruct(args); } catch (e) {} return RApply(target, self, args); },
    });
    window[name] = P;
    call(WMSet, mine, P, Orig);
    push(installed, { label: name, obj: window, name, value: P, accessor: null });
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
    call(WMSet, storages, p, real);
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
      if (!cached || call(WMGet, storages, cached) !== real) cached = proxyStorage(real, area);
      return cached;
    };
    DefProp(owner, prop, { configurable: true, enumerable: d.enumerable, get });
    push(installed, { label: prop, obj: owner, name: prop, value: null, accessor: get });
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
  const evalHook = disguise(origEval, (target, self, args) => {
    if (!fromDriver()) emit("eval", { code: sample(args[0]) });
    return RApply(target, self, args);
  });
  window.eval = evalHook;
  push(installed, { label: "eval", obj: window, name: "eval", value: evalHook, accessor: null });
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
      call(WMSet, mine, P, Orig);
    } catch (e) {}
  }

  // Network sinks, recorded before the proxy or the CSP sees them.
  wrap(window, "fetch", (args) => {
    const input = args[0];
    const url = typeof input === "string" ? input : (input && input.url) || str(input);
    const init = args[1] || {};
    emit("request", { api: "fetch", url: sample(url), method: sample(init.method || "GET"), body: sample(init.body) });
  });
  const xhrTarget = new WeakMapCtor();
  wrap(XMLHttpRequest.prototype, "open", function (args) { call(WMSet, xhrTarget, this, [str(args[0]), str(args[1])]); }, "XMLHttpRequest.open");
  wrap(XMLHttpRequest.prototype, "send", function (args) {
    const [method, url] = call(WMGet, xhrTarget, this) || ["", ""];
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
    push(installed, { label: C, obj: window, name: C, value: P, accessor: null });
  }

  // Listeners on the page outside the plugin's container: the whole page, or one of the
  // host's own elements (a key listener on the host's password field is a keylogger).
  const NodeContains = Node.prototype.contains, IsConnected = GetDesc(Node.prototype, "isConnected").get;
  const hostElement = (el) => {
    // The host's own elements are in the page; one the plugin made and has not attached yet is not.
    try { return root !== null && el instanceof Element && call(IsConnected, el) && !call(NodeContains, root, el); } catch (e) { return false; }
  };
  const describe = (el) => { try { return call(StrLower, str(el.tagName)) + (el.id ? "#" + el.id : el.name ? "[name=" + el.name + "]" : ""); } catch (e) { return "?"; } };
  wrap(EventTarget.prototype, "addEventListener", function (args) {
    const t = this === window ? "window" : this === document ? "document" : this === document.documentElement ? "html" : this === document.body ? "body" : hostElement(this) ? "host:" + describe(this) : null;
    if (t) emit("page-listener", { event: str(args[0]), target: t });
  }, "addEventListener");

  // What the user typed into the host's fields: reading it is reading their credentials.
  const reported = new WeakMapCtor();
  const fieldRead = (el, how) => {
    if (!hostElement(el) || call(WMHas, reported, el)) return;
    call(WMSet, reported, el, true);
    emit("field-read", { field: describe(el), kind: str(el.type || ""), how });
  };
  hookProperty(HTMLInputElement.prototype, "value", function () { fieldRead(this, "value"); }, null, "input.value");
  hookProperty(HTMLTextAreaElement.prototype, "value", function () { fieldRead(this, "value"); }, null, "textarea.value");
  construct("FormData", (args) => {
    const form = args[0];
    if (form && form.elements) for (const el of form.elements) fieldRead(el, "FormData");
  });
  // A service worker outlives the plugin and sees the host's traffic.
  if (window.ServiceWorkerContainer) {
    wrap(ServiceWorkerContainer.prototype, "register", (args) => emit("service-worker", { url: sample(str(args[0])) }), "serviceWorker.register");
  }

  // Background code and miners.
  construct("Worker", (args) => emit("worker", { kind: "Worker", url: sample(str(args[0])) }));
  construct("SharedWorker", (args) => emit("worker", { kind: "SharedWorker", url: sample(str(args[0])) }));
  // Worklets (audio, paint) run the plugin's code off the page's thread too.
  if (window.Worklet) {
    wrap(Worklet.prototype, "addModule", (args) => emit("worker", { kind: "Worklet", url: sample(str(args[0])) }), "Worklet.addModule");
  }
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
    try { if (e.target && !call(NodeContains, root, e.target)) call(PreventDefault, e); } catch (err) {}
  }, true);

  // Integrity: is every hook still ours? A value that is not ours is either the plugin's
  // own wrapper (an override) or a native function put back (our hook removed: tampering).
  const NATIVE = /\{\s*\[native code\]\s*\}\s*$/;
  const isNative = (fn) => { try { return call(RegTest, NATIVE, call(FnToString, fn)); } catch (e) { return false; } };
  const check = () => {
    const overrides = [], tampered = [];
    for (const h of installed) {
      let now;
      try {
        if (h.accessor) {
          const d = GetDesc(h.obj, h.name);
          now = d ? (d.get || d.set) : undefined;
          if (now !== h.accessor) push(tampered, h.label);
          continue;
        }
        now = h.obj[h.name];
      } catch (e) { push(tampered, h.label); continue; }
      if (now === h.value) continue;
      if (typeof now === "function" && !isNative(now) && !call(WMHas, mine, now)) push(overrides, h.label);
      else push(tampered, h.label);
    }
    for (const name of overrides) emit("override", { name });
    const shown = looks();
    return { hooks: installed.length, overrides: call(ArrJoin, overrides, ","), tampered: call(ArrJoin, tampered, ","), passwords: shown.passwords, overlay: shown.overlay };
  };
  // What the plugin shows, measured with the browser's own functions (captured): a
  // password field, and whether something of it covers most of the page.
  const QueryAll = Element.prototype.querySelectorAll, Rect = Element.prototype.getBoundingClientRect;
  const Style = window.getComputedStyle;
  const looks = () => {
    const out = { passwords: 0, overlay: false };
    try {
      if (!root) return out;
      out.passwords = call(QueryAll, root, "input[type=password]").length;
      const area = window.innerWidth * window.innerHeight;
      for (const el of call(QueryAll, root, "*")) {
        const position = call(Style, window, el).position;
        if (position !== "fixed" && position !== "absolute") continue;
        const r = call(Rect, el);
        if (r.width * r.height > area / 2) { out.overlay = true; break; }
      }
    } catch (e) {}
    return out;
  };

  // DOM changes outside the container. The host page is ours and fixed: everything up to
  // and including #plugin-root is the host's own parsing, and the entry script element
  // right after it is ours too. Records are handled in order, so readiness cannot be
  // skipped or faked by the page, however late this callback runs. The integrity check
  // request is found first, with captured accessors, and each record is handled on its
  // own: a page that makes one record throw cannot make the check disappear.
  const getter = (proto, name) => { const d = GetDesc(proto, name); return d && d.get; };
  let ready = false, root = null, entrySeen = false;
  const handle = (r) => {
    if (!ready) {
      for (const n of r.addedNodes || []) if (n.id === "plugin-root") { ready = true; root = n; }
      return;
    }
    const added = [];
    for (const n of r.addedNodes || []) {
      // The first script after the container is the host's own: the plugin's entry.
      if (!entrySeen && n.tagName === "SCRIPT") { entrySeen = true; continue; }
      if (n.isConnected && !(n.nodeType === 3 && !n.textContent.trim())) push(added, n);
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
    for (const r of records) {
      try { handle(r); } catch (e) { emit("observer-error", { message: sample(str(e)) }); }
    }
  });
  observer.observe(document, { childList: true, subtree: true, attributes: true, characterData: true });

  // Simulated time: the host jumps the clock over the command channel; due timers fire in
  // order, and running animations are moved on by the same amount. Real time goes on as
  // usual in between, so a page sees one clock, never a fake one it could name.
  const OrigDate = Date, RealNow = Date.now, RealSetTimeout = window.setTimeout;
  const RealClearTimeout = window.clearTimeout, PerfNow = Performance.prototype.now, perf = window.performance;
  const GetAnimations = Document.prototype.getAnimations;
  const animTime = GetDesc(Animation.prototype, "currentTime"), animState = getter(Animation.prototype, "playState");
  let skew = 0;
  const vnow = () => call(RealNow, OrigDate) + skew;
  const timers = new MapCtor();  // id -> {fn, args, due, every, delay, real, id, line}
  let jumping = false;  // during a jump, the jump alone fires timers (real ones are re-armed after)
  let lineNow = null;  // during a jump, the line of the timer that fired last
  const arm = (rec) => {
    rec.real = call(RealSetTimeout, window, () => { if (!jumping) fire(rec); }, call(MathMax, Math, 0, rec.due - vnow()));
  };
  const fire = (rec) => {
    if (call(MapGet, timers, rec.id) !== rec) return;
    call(RealClearTimeout, window, rec.real);
    if (rec.every) { rec.due += rec.every; arm(rec); } else call(MapDelete, timers, rec.id);
    try {
      if (typeof rec.fn === "function") RApply(rec.fn, window, rec.args);
      else call(origEval, window, str(rec.fn));
    } catch (e) { emit("error", { message: sample(e && (e.stack || e.message) || e) }); }
  };
  const schedule = (every) => (target, self, args) => {
    const [fn, delay, ...rest] = args;
    if (typeof fn === "string") emit("string-timer", { code: sample(fn) });
    const ms = call(MathMax, Math, 0, +delay || 0);
    // A short timer set by a timer a jump fired (or by its promise jobs) joins that timer's
    // line: a chain of timeouts is capped as one interval is. A long one starts its own
    // line, whose first firing always happens (a payload set an hour ahead by a busy
    // ticker still fires).
    const line = lineNow !== null && ms <= CHAIN_MS ? lineNow : { burst: 0, quiet: 0, fired: 0, last: 0, work: 0, span: 0 };
    const rec = { fn, args: rest, due: vnow() + ms, every: every ? call(MathMax, Math, 1, ms) : 0, delay: ms, real: 0, id: 0, line };
    arm(rec);
    rec.id = rec.real;  // the id the page holds stays the same however often it is re-armed
    call(MapSet, timers, rec.id, rec);
    return rec.id;
  };
  const cancel = (target, self, args) => {
    const rec = call(MapGet, timers, args[0]);
    if (rec) { call(RealClearTimeout, window, rec.real); call(MapDelete, timers, args[0]); return undefined; }
    return RApply(target, self, args);
  };
  for (const [name, hook] of [["setTimeout", schedule(false)], ["setInterval", schedule(true)], ["clearTimeout", cancel], ["clearInterval", cancel]]) {
    const h = disguise(window[name], hook);
    window[name] = h;
    push(installed, { label: name, obj: window, name, value: h, accessor: null });
  }
  const DateHook = new ProxyCtor(OrigDate, {
    construct(target, args, nt) { return RConstruct(target, args.length ? args : [vnow()], nt === DateHook ? target : nt); },
    apply() { return call(OrigDate.prototype.toString, new OrigDate(vnow())); },
  });
  call(WMSet, mine, DateHook, OrigDate);
  const nowHook = disguise(RealNow, () => vnow());
  DefProp(OrigDate, "now", { value: nowHook, writable: true, configurable: true, enumerable: false });
  DefProp(OrigDate.prototype, "constructor", { value: DateHook, writable: true, configurable: true, enumerable: false });
  window.Date = DateHook;
  Performance.prototype.now = disguise(PerfNow, (target, self, args) => RApply(target, self, args) + skew);
  // A jump fires every timer that falls due within it, each at its own due time (the
  // clock reads that time while it runs), so timers set by timers fire within the jump
  // too. A timer's line (an interval, or a chain of timeouts each set by the last) has
  // limits per jump: at most BURST firings that did something we record (a request, a
  // cookie read), itself or in the promise jobs it queued, and QUIET firings that did
  // not. Without them a benign poll every 5 s fires 5,000 times in the 7 hours jumped,
  // each a request through the proxy, which reads as CPU burn and floods the trace; with
  // them a payload that silently counts ticks still fires once its count is reached, and
  // a busy decoy timer cannot starve the others. Catching up also stops after
  // CATCH_UP_MS of real time: the line's later firings move past the jump, as a browser
  // skips ticks for a page it kept from running. A line's first firing always happens:
  // a payload that waits hours fires, whatever else the page keeps busy. Between two
  // firings the jump yields a task (a private message port), so the promise jobs of one
  // (an async poll's fetch) run, and count, before the next.
  const BURST = 100, QUIET = 2000, CATCH_UP_MS = 500, CHAIN_MS = 60000, DUTY = 0.05, BUSY_MS = 300;
  let busiest = 0;  // the busiest line's share of its simulated time, so far
  const hopChannel = new MessageChannelCtor();
  const hopIn = call(Port1, hopChannel), hopOut = call(Port2, hopChannel);
  let hopNext = null;
  call(SetOnMessage, hopIn, () => { const f = hopNext; hopNext = null; if (f) f(); });
  const hop = (f) => { hopNext = f; call(PortPost, hopOut, 0); };
  // The clock moves forward only: to a timer's due time, or to the jump's end.
  const moveTo = (t) => { const s = t - call(RealNow, OrigDate); if (s > skew) skew = s; };
  const advance = (ms, state) => {
    const target = vnow() + ms;
    jumping = true;
    call(MapForEach, timers, (rec) => { rec.line.burst = 0; rec.line.quiet = 0; rec.line.fired = 0; });
    const dueBefore = vnow();
    const began = call(RealNow, OrigDate);
    let round = 0, last = null, before = 0;
    const finish = () => {
      lineNow = null;
      moveTo(target);
      jumping = false;
      // Timers run on real time again; ticks still missed (past the round cap) are skipped.
      call(MapForEach, timers, (rec) => {
        call(RealClearTimeout, window, rec.real);
        if (rec.every && rec.due <= vnow()) rec.due = vnow() + rec.every;
        arm(rec);
      });
      try {
        const running = call(GetAnimations, document);
        for (let i = 0; i < running.length; i++) {
          const a = running[i];
          if (call(animState, a) === "running") call(animTime.set, a, (call(animTime.get, a) || 0) + ms);
        }
      } catch (e) {}
      state.busiest = busiest;
      state.done = true;
    };
    const step = () => {
      if (last !== null) {
        if (emitted !== before) last.burst += 1; else last.quiet += 1;
        last = null;
      }
      lineNow = null;
      while (round < 10000) {
        round++;
        let next = null;
        call(MapForEach, timers, (rec) => { if (rec.due <= target && (!next || rec.due < next.due)) next = rec; });
        if (next === null) break;
        const line = next.line;
        const late = call(RealNow, OrigDate) - began > CATCH_UP_MS;
        if (line.fired > 0 && (line.burst >= BURST || line.quiet >= QUIET || late)) {
          // Past the jump: an interval's next tick, a timeout just after the jump's end.
          next.due = target + (next.every || 1);
          state.postponed += 1;
          continue;
        }
        moveTo(next.due);
        // Simulated time this firing stands for: since the line's last firing.
        const span = next.due - (line.fired > 0 ? line.last : dueBefore);
        line.last = next.due;
        line.fired += 1;
        last = line;
        lineNow = line;
        before = emitted;
        const t0 = call(PerfNow, perf);
        fire(next);
        // A repeat of a line is hours of ticks run in a moment: its own time is the
        // simulation's, reported so the host leaves it out of the page's CPU. A first
        // firing counts as on a visitor's page (a payload that burns once it wakes).
        // Only as much as the time it stands for explains: work at up to DUTY of the
        // simulated time (a poll re-rendering) is credited, the rest is a burn however
        // the timers are chained (a zero-delay chain stands for no time at all).
        if (line.fired > 1) {
          const took = call(PerfNow, perf) - t0;
          state.catchUpMs += call(MathMin, Math, took, 1 + DUTY * call(MathMax, Math, 0, span));
          state.repeats += 1;
          // A line's share of the simulated time it stood for, over all jumps: a throttled
          // miner's ticks keep a page busy a third of the time, a poll's a fraction of 1 %.
          line.work += took;
          line.span += call(MathMax, Math, 0, span);
          if (line.work >= BUSY_MS) {
            const share = line.work / call(MathMax, Math, 1, line.span);
            if (share > busiest) busiest = share;
          }
        }
        state.fired += 1;
        hop(step);
        return;
      }
      finish();
    };
    step();
  };
  // The host starts a jump and asks until it is done (a promise for it to await would be
  // resolved through "then" and "constructor" lookups the page could have redefined).
  // What the host reads: the last jump's record, null-prototype, primitives only.
  let lastJump = null;
  const jump = (ms) => {
    const state = NullObject(null);
    state.done = false;
    state.fired = 0;
    state.catchUpMs = 0;
    state.repeats = 0;
    state.postponed = 0;
    state.busiest = busiest;
    lastJump = state;
    advance(ms, state);
    return lastJump;
  };

  // The host mounts and unmounts the plugin, and finds the fields to fill, from here:
  // no global of ours on the page, no evaluation of the driver's in the plugin's stack,
  // and nothing read through prototypes the plugin could have redefined by then.
  const explain = (e) => { try { return str(e && (e.stack || e.message) || e); } catch (x) { return "?"; } };
  let unmountFn = null, tokenCalls = 0;
  const mount = (cmd) => {
    const out = NullObject(null);
    out.error = null;
    const name = str(cmd.name), person = cmd.person || {};
    let plugin;
    try {
      plugin = window[name];
      if (!plugin || typeof plugin.mount !== "function") { out.error = "window." + name + ".mount is not a function"; return out; }
    } catch (e) { out.error = "window." + name + " threw: " + cut(explain(e), 400); return out; }
    const user = { id: person.id, name: person.name, email: person.email, role: cmd.role };
    const token = cmd.token;
    const ctx = {
      auth: { getUser: () => user, getToken: () => { tokenCalls += 1; return token; } },
      navigate: (path) => {},
      notifications: { show: () => {}, error: () => {} },
      api: { fetch: (path, opts) => window.fetch("/api" + path, opts) },
    };
    try {
      const unmount = call(plugin.mount, plugin, call(GetById, document, "plugin-root"), ctx);
      unmountFn = typeof unmount === "function" ? unmount : null;
    } catch (e) { out.error = "mount threw: " + cut(explain(e), 480); }
    return out;
  };
  const unmount = () => {
    const out = NullObject(null);
    out.error = null;
    try { if (unmountFn) call(unmountFn, window); } catch (e) { out.error = cut(explain(e), 300); }
    return out;
  };
  const has = (text, part) => call(StrIncludes, text, part);
  const fields = (cmd) => {
    const c = cmd.c || {}, out = [];
    const root = call(GetById, document, "plugin-root");
    const all = call(DocQueryAll, document, str(cmd.sel));
    const count = call(ListLength, all);
    for (let i = 0; i < count && out.length < (+cmd.max || 0); i++) {
      const el = call(ListItem, all, i);
      const attr = (n) => str(call(GetAttr, el, n) || "");
      let value;
      if (root && call(Contains, root, el)) {
        value = has(call(StrLower, attr("type") + attr("name")), "mail") ? c.inside + "@example.com" : c.inside;
      } else {
        const hint = call(StrLower, attr("name") + " " + attr("type") + " " + attr("autocomplete") + " " + attr("id"));
        if (has(hint, "pass")) continue;  // typed key by key by the host
        else if (has(hint, "card") || has(hint, "cc-number")) value = c.card;
        else if (has(hint, "cvc") || has(hint, "cvv") || has(hint, "csc")) value = "123";
        else if (has(hint, "mail")) value = c.email;
        else value = "hello " + c.email;
      }
      push(out, [i, value]);
    }
    return out;
  };

  // The host's commands, called through the DevTools protocol on this listener (its event
  // type is known to the host alone; a command without the nonce is ignored).
  const noop = () => {};
  call(AddListener, window, CHANNEL, (cmd) => {
    if (!cmd || cmd.nonce !== NONCE) return noop();
    if (cmd.op === "check") return check();
    if (cmd.op === "clock") return jump(+cmd.ms || 0);
    if (cmd.op === "jumped") return lastJump;
    if (cmd.op === "mount") return mount(cmd);
    if (cmd.op === "unmount") return unmount();
    if (cmd.op === "tokens") return tokenCalls;
    if (cmd.op === "fields") return fields(cmd);
    return null;
  });

  // Last: source text of every hook is its native's (hooks of hooks included).
  const toStringHook = disguise(FnToString, (target, self, args) => RApply(target, call(WMHas, mine, self) ? call(WMGet, mine, self) : self, args));
  DefProp(Function.prototype, "toString", { value: toStringHook, writable: true, configurable: true, enumerable: false });
  push(installed, { label: "Function.toString", obj: Function.prototype, name: "toString", value: toStringHook, accessor: null });
})();
