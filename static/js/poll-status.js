// Follows a status resource until it says it is done (the connection test page).
// An element with data-status-url gets that URL's HTML fragment as its content,
// fetched again every second; the fragment's data-done="true" stops it. No inline
// script: this file is all the page runs, so a strict CSP can forbid the rest.
(function () {
  "use strict";
  var PERIOD_MS = 1000;
  var MAX_TRIES = 300; // about five minutes: a lost test stops being asked for

  function follow(element) {
    var url = element.getAttribute("data-status-url");
    var tries = 0;
    function tick() {
      tries += 1;
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (!response.ok) {
            throw new Error("status " + response.status);
          }
          return response.text();
        })
        .then(function (html) {
          element.innerHTML = html;
          var part = element.querySelector("[data-done]");
          var done = part && part.getAttribute("data-done") === "true";
          if (done) {
            element.removeAttribute("data-status-url");
          } else if (tries < MAX_TRIES) {
            window.setTimeout(tick, PERIOD_MS);
          }
        })
        .catch(function () {
          if (tries < MAX_TRIES) {
            window.setTimeout(tick, PERIOD_MS * 5);
          }
        });
    }
    window.setTimeout(tick, PERIOD_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var elements = document.querySelectorAll("[data-status-url]");
    for (var i = 0; i < elements.length; i += 1) {
      follow(elements[i]);
    }
  });
})();
