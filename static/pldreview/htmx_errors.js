/* Say so when an htmx request fails in a way that has no fragment to show (403, 404, 413, 5xx, no answer):
   htmx itself leaves the page unchanged and silent. Form errors (400, 409, 422, 429) are swapped in place by
   the responseHandling in base.html, so they never reach this. Plain JS under the CSP: no inline script. */
(function () {
  "use strict";

  var WORDS = {
    403: "You may not do this (your role or the record's state does not allow it).",
    404: "It no longer exists, or you may not see it.",
    413: "What you sent is too large.",
  };

  function show(text) {
    var box = document.getElementById("htmx-error");
    if (!box) return;
    box.textContent = text;
    box.hidden = false;
  }

  function polling(elt) {
    // A poll (a badge, a progress bar) is not something the person did: its failure is not "Not done".
    return elt && /every /.test(elt.getAttribute("hx-trigger") || "");
  }

  document.addEventListener("htmx:responseError", function (ev) {
    if (polling(ev.detail.elt)) return;
    var status = ev.detail.xhr ? ev.detail.xhr.status : 0;
    var words = WORDS[status] || (status >= 500 ? "The server failed to do this; nothing was changed by this request." : "");
    show("Not done (HTTP " + status + "): " + (words || "the server refused the request.") + " Reload the page to see the current state.");
  });

  document.addEventListener("htmx:sendError", function (ev) {
    if (polling(ev.detail.elt)) return;
    show("Not done: the server could not be reached. Check the connection and reload the page.");
  });

  document.addEventListener("htmx:beforeRequest", function (ev) {
    if (polling(ev.detail.elt)) return;
    var box = document.getElementById("htmx-error");
    if (box) box.hidden = true;
  });
})();
