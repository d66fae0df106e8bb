// Registration Authority console: copy the enrolment link to the
// clipboard. The page works without it (the link is selectable text).
(function () {
  "use strict";
  var button = document.getElementById("invite-copy");
  if (!button || !navigator.clipboard) {
    return;
  }
  var target = document.getElementById(button.getAttribute("data-copy-target"));
  var status = document.getElementById("invite-copy-status");
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(target.value).then(function () {
      status.textContent = "The link was copied.";
    }, function () {
      target.select();
      status.textContent = "Select the link and copy it.";
    });
  });
})();
