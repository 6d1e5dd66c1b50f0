/* Copy buttons: <button data-copy="ELEMENT-ID" hidden> copies that element's text. The button stays hidden
   without JavaScript (the text can still be selected by hand); a nearby .copy-status announces the result. */
(function () {
  "use strict";

  function announce(button, text) {
    var status = button.parentNode.querySelector(".copy-status");
    if (status) status.textContent = text;
  }

  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) return;
      var text = source.textContent.trim();
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(
          function () { announce(button, "Copied."); },
          function () { selectText(source); announce(button, "Selected: press Ctrl+C to copy."); }
        );
      } else {
        selectText(source);
        announce(button, "Selected: press Ctrl+C to copy.");
      }
    });
  });
})();
