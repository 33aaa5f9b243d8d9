// Gatehouse desk: keyboard shortcuts and small conveniences. Progressive enhancement only:
// every action is a plain form that works without this file. No inline handlers, no eval.
(function () {
  "use strict";
  var page = document.body.getAttribute("data-page");

  function typing(target) {
    var tag = target && target.tagName ? target.tagName.toLowerCase() : "";
    return tag === "input" || tag === "textarea" || tag === "select" || (target && target.isContentEditable);
  }

  function toggleHelp() {
    var help = document.getElementById("help");
    if (help) { help.hidden = !help.hidden; }
  }

  // --- the queue: j/k select, o opens, a/r open at the decision ---
  var rows = page === "queue" ? Array.prototype.slice.call(document.querySelectorAll("#queue tr.row")) : [];
  var current = -1;

  function select(i) {
    if (!rows.length) { return; }
    current = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, n) { r.classList.toggle("selected", n === current); });
    rows[current].focus();
    rows[current].scrollIntoView({ block: "nearest" });
  }

  function open(anchor) {
    if (current < 0) { return; }
    var href = rows[current].getAttribute("data-href");
    // The link is ours (url_for); only a same-site path is followed.
    if (href && href.charAt(0) === "/" && href.charAt(1) !== "/") {
      window.location.assign(href + (anchor || ""));
    }
  }

  function focusDecision(which) {
    var target = document.getElementById(which === "approve" ? "approve" : "reject-reasons");
    if (target) {
      target.scrollIntoView({ block: "center" });
      target.focus();
    }
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
    var key = event.key;
    if (key === "?") { toggleHelp(); event.preventDefault(); return; }
    if (key === "Escape") { var help = document.getElementById("help"); if (help) { help.hidden = true; } return; }
    if (page === "queue") {
      if (key === "j") { select(current + 1); }
      else if (key === "k") { select(current - 1); }
      else if (key === "o" || key === "Enter") { open(""); }
      else if (key === "a") { open("#approve"); }
      else if (key === "r") { open("#reject"); }
      else { return; }
      event.preventDefault();
    } else if (page === "submission") {
      if (key === "a") { focusDecision("approve"); }
      else if (key === "r") { focusDecision("reject"); }
      else { return; }
      event.preventDefault();
    }
  });

  if (page === "submission") {
    if (window.location.hash === "#approve") { focusDecision("approve"); }
    if (window.location.hash === "#reject") { focusDecision("reject"); }
  }
  if (page === "queue" && rows.length) { select(0); }
  if (page === "code") {
    var viewer = document.querySelector(".viewer");
    var id = viewer ? viewer.getAttribute("data-target") : null;
    var line = id ? document.getElementById(id) : null;
    if (line) { line.scrollIntoView({ block: "center" }); }
  }
})();
