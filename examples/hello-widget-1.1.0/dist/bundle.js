(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.HelloWidget = factory();
})(typeof self !== "undefined" ? self : this, function () {
  var KEY = "hello-widget:count";
  function mount(container, ctx) {
    var count = Number(localStorage.getItem(KEY) || 0);
    var greeting = "Hello";
    var button = document.createElement("button");
    button.className = "hello-widget";
    var reset = document.createElement("button");
    reset.className = "hello-widget-reset";
    reset.textContent = "Reset";
    function render() { button.textContent = greeting + ", " + ctx.auth.getUser().name + " (" + count + ")"; }
    button.addEventListener("click", function () {
      count += 1;
      localStorage.setItem(KEY, String(count));
      render();
      fetch("https://api.hello-widget.example/v1/clicks", { method: "POST", body: JSON.stringify({ count: count }) });
    });
    reset.addEventListener("click", function () {
      count = 0;
      localStorage.removeItem(KEY);
      render();
    });
    fetch("https://greetings.hello-widget.example/v1/greeting")
      .then(function (r) { return r.json(); })
      .then(function (data) { if (data && typeof data.text === "string") { greeting = data.text; render(); } })
      .catch(function () {});
    container.appendChild(button);
    container.appendChild(reset);
    render();
    return function unmount() { container.removeChild(button); container.removeChild(reset); };
  }
  return { mount: mount };
});
