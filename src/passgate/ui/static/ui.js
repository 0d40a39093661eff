// passgate UI: the only script (the Content-Security-Policy allows no inline script).
// Copy buttons: <button data-copy="INPUT-ID">; the result is announced in
// <span data-copied-for="INPUT-ID" role="status">.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var id = button.getAttribute("data-copy");
      var input = document.getElementById(id);
      var status = document.querySelector('[data-copied-for="' + id + '"]');
      if (!input) { return; }
      var done = function (message) { if (status) { status.textContent = message; } };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(
          function () { done("Copied."); },
          function () { input.select(); done("Selected: press Ctrl+C to copy."); }
        );
      } else {
        input.select();
        done("Selected: press Ctrl+C to copy.");
      }
    });
  });
});
