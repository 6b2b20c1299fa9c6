// The mailbox form's provider select: choosing a provider fills in protocol,
// server, port and encryption at once and shows the provider's note. Without
// this file the select's "Fill in" button reloads the page with the same values
// (?preset=KEY), so the form works without JavaScript. No inline script: the
// CSP allows only files like this one.
(function () {
  "use strict";
  var FIELDS = { protocol: "id_protocol", host: "id_host", port: "id_port", tlsMode: "id_tls_mode" };

  function fill(select) {
    var option = select.options[select.selectedIndex];
    var note = document.getElementById("preset-note");
    if (!option || !option.value) {
      return;
    }
    Object.keys(FIELDS).forEach(function (name) {
      var field = document.getElementById(FIELDS[name]);
      var value = option.dataset[name];
      // A generic preset has no server name: keep the one typed.
      if (field && value !== undefined && (value !== "" || name !== "host")) {
        field.value = value;
        field.dispatchEvent(new Event("change", { bubbles: true }));
      }
    });
    if (note) {
      note.textContent = option.dataset.note || "";
    }
  }

  function start() {
    var select = document.getElementById("preset");
    var button = document.getElementById("preset-fill");
    if (!select) {
      return;
    }
    if (button) {
      button.hidden = true; // the select fills at once
    }
    select.addEventListener("change", function () {
      fill(select);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
