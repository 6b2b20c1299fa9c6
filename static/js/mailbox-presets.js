// The mailbox form's provider selects: choosing a provider fills in its server
// settings at once and shows the provider's note; one select for the source
// (protocol, server, port, encryption), one for "Where messages go" (delivery
// into an IMAP mailbox: server, port, encryption, and an OAuth2 login where
// the provider is configured). Without this file each select's "Fill in"
// button reloads the page with the same values (?preset=KEY,
// ?destination_preset=KEY), so the form works without JavaScript. No inline
// script: the CSP allows only files like this one.
(function () {
  "use strict";
  var SELECTS = [
    {
      select: "preset",
      button: "preset-fill",
      note: "preset-note",
      fields: { protocol: "id_protocol", host: "id_host", port: "id_port", tlsMode: "id_tls_mode" },
    },
    {
      select: "destination-preset",
      button: "destination-preset-fill",
      note: "destination-preset-note",
      fields: {
        deliveryKind: "id_delivery_kind",
        host: "id_destination_host",
        port: "id_destination_port",
        tlsMode: "id_destination_tls_mode",
        auth: "id_destination_auth",
      },
    },
  ];

  function fill(select, which) {
    var option = select.options[select.selectedIndex];
    var note = document.getElementById(which.note);
    if (!option || !option.value) {
      return;
    }
    Object.keys(which.fields).forEach(function (name) {
      var field = document.getElementById(which.fields[name]);
      var value = option.dataset[name];
      // A generic preset has no server name: keep the one typed; a provider
      // without OAuth2 here leaves the login as chosen.
      if (field && value !== undefined && value !== "") {
        field.value = value;
        field.dispatchEvent(new Event("change", { bubbles: true }));
      }
    });
    if (note) {
      note.textContent = option.dataset.note || "";
    }
  }

  function start() {
    SELECTS.forEach(function (which) {
      var select = document.getElementById(which.select);
      var button = document.getElementById(which.button);
      if (!select) {
        return;
      }
      if (button) {
        button.hidden = true; // the select fills at once
      }
      select.addEventListener("change", function () {
        fill(select, which);
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
