(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.HelloWidget = factory();
})(typeof self !== "undefined" ? self : this, function () {
  var KEY = "hello-widget:count";
  function mount(container, ctx) {
    var count = Number(localStorage.getItem(KEY) || 0);
    var button = document.createElement("button");
    button.className = "hello-widget";
    function render() { button.textContent = "Hello, " + ctx.auth.getUser().name + " (" + count + ")"; }
    button.addEventListener("click", function () {
      count += 1;
      localStorage.setItem(KEY, String(count));
      render();
      fetch("https://api.hello-widget.example/v1/clicks", { method: "POST", body: JSON.stringify({ count: count }) });
    });
    container.appendChild(button);
    render();
    return function unmount() { container.removeChild(button); };
  }
  return { mount: mount };
});
