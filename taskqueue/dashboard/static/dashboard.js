// The dashboard's only script: refresh each live region from the JSON endpoint, and
// "choose all" checkboxes. No framework, nothing fetched from elsewhere.
"use strict";
(function () {
  var PERIOD_MS = 2000;
  function busy(region) {
    // never replace what someone is choosing or typing
    return region.querySelector("input:checked, input:focus, select:focus, button:focus") !== null;
  }
  function refresh(region) {
    if (document.hidden || busy(region)) return;
    fetch(region.getAttribute("data-live"), { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body || busy(region)) return;
        region.innerHTML = body.html;
        var ms = document.getElementById("server-ms");
        if (ms) ms.textContent = body.server_ms.toFixed(1);
        region.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the next tick tries again */ });
  }
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t && t.hasAttribute && t.hasAttribute("data-all")) {
      var boxes = t.closest("table").querySelectorAll('input[name="id"]');
      for (var i = 0; i < boxes.length; i++) boxes[i].checked = t.checked;
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    var regions = document.querySelectorAll("[data-live]");
    regions.forEach(function (region) {
      setInterval(function () { refresh(region); }, PERIOD_MS);
    });
  });
})();
