// nhsid WebAuthn ceremonies for the sign-in, enrolment and add-device pages.
// The page's #ceremony-start button says which ceremony (data-ceremony) and
// carries the flow id (data-flow) or invite code (data-invite). It speaks
// the same JSON ceremony API as every other client.
(function () {
  "use strict";

  var button = document.getElementById("ceremony-start");
  if (!button) { return; }
  var statusEl = document.getElementById("ceremony-status");
  var errorBox = document.getElementById("ceremony-error");
  var errorMsg = document.getElementById("ceremony-error-message");

  function status(text) { if (statusEl) { statusEl.textContent = text; } }

  function showError(text) {
    status("");
    if (errorBox && errorMsg) {
      errorMsg.textContent = text;
      errorBox.hidden = false;
      errorBox.focus();
    }
    button.disabled = false;
    button.focus();
  }

  function clearError() { if (errorBox) { errorBox.hidden = true; } }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (data) {
        if (!resp.ok) {
          var err = new Error(data.message || "Something went wrong. Try again.");
          err.code = data.error || "server_error";
          throw err;
        }
        return data;
      });
    });
  }

  // browserMessage explains a DOMException from the authenticator.
  function browserMessage(e) {
    switch (e && e.name) {
      case "NotAllowedError":
        return "The security key request was cancelled or timed out. Try again.";
      case "InvalidStateError":
        return "This security key is already registered. Use a different key.";
      case "NotSupportedError":
        return "This browser or security key is not supported. Try another browser or key.";
      case "SecurityError":
        return "Your browser refused the request for security reasons. Check you are on the right website.";
      default:
        return (e && e.message) || "Something went wrong. Try again.";
    }
  }

  function supported() {
    return window.PublicKeyCredential &&
      typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function" &&
      typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function";
  }

  function login() {
    var flow = button.getAttribute("data-flow");
    status("Waiting for your security key…");
    return post("/webauthn/login/begin", { flow: flow }).then(function (opts) {
      var publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(opts.publicKey);
      return navigator.credentials.get({ publicKey: publicKey }).catch(function (e) {
        throw new Error(browserMessage(e));
      });
    }).then(function (cred) {
      status("Checking…");
      return post("/webauthn/login/finish?flow=" + encodeURIComponent(flow), cred.toJSON());
    }).then(function (data) {
      status("Signed in. Continuing…");
      window.location.assign(data.redirect);
    }, function (e) {
      // The sign-in looked unusual: start again, now asking for a
      // high-assurance key (the next begin lists only those).
      if (e.code === "step_up_required" && !stepUpTried) {
        stepUpTried = true;
        status(e.message);
        return login();
      }
      throw e;
    });
  }
  var stepUpTried = false;

  function register() {
    var invite = button.getAttribute("data-invite") || "";
    var body = invite ? { invite: invite } : {};
    var finishURL = "/webauthn/register/finish" + (invite ? "?invite=" + encodeURIComponent(invite) : "");
    status("Follow your browser's instructions to set up your security key…");
    return post("/webauthn/register/begin", body).then(function (opts) {
      var publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(opts.publicKey);
      return navigator.credentials.create({ publicKey: publicKey }).catch(function (e) {
        throw new Error(browserMessage(e));
      });
    }).then(function (cred) {
      status("Checking…");
      return post(finishURL, cred.toJSON());
    }).then(function (data) {
      status("");
      button.hidden = true;
      var done = document.getElementById("ceremony-done");
      var msg = document.getElementById("ceremony-done-message");
      if (msg) {
        msg.textContent = data.aal === 3
          ? "It is registered as a high-assurance key (AAL3)."
          : "It is registered at standard assurance (AAL2).";
      }
      if (done) { done.hidden = false; done.setAttribute("tabindex", "-1"); done.focus(); }
    });
  }

  button.addEventListener("click", function () {
    clearError();
    if (!supported()) {
      showError("This browser cannot use security keys. Use an up-to-date version of Chrome, Edge, Firefox or Safari.");
      return;
    }
    button.disabled = true;
    var run = button.getAttribute("data-ceremony") === "register" ? register : login;
    run().catch(function (e) { showError(e.message); });
  });
})();
