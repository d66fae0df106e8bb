// Submits the SAML HTTP-POST binding form on page load. The page also has
// a visible Continue button, so it works without JavaScript; this file is
// separate so the page needs no inline script under the strict CSP.
(function () {
  "use strict";
  var form = document.getElementById("saml-post-form");
  if (form && form.getAttribute("data-auto-submit") === "true") {
    form.submit();
  }
})();
