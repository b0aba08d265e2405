// The gallery's filters: status, flag and text search over the cards already in the page.
// Written by hand: it is three tests on data-* attributes the page's template writes; a list
// or table library (List.js, DataTables) would add its own markup conventions and more bytes
// than this whole file, and the page must run offline without loading anything.
(function () {
  "use strict";
  var status = document.getElementById("filter-status");
  var flag = document.getElementById("filter-flag");
  var text = document.getElementById("filter-text");
  var count = document.getElementById("filter-count");
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card"));

  function matches(card, wantStatus, wantFlag, words) {
    if (wantStatus && card.dataset.status !== wantStatus) return false;
    var flags = card.dataset.flags ? card.dataset.flags.split(" ") : [];
    if (wantFlag === "-" && flags.length) return false;
    if (wantFlag && wantFlag !== "-" && flags.indexOf(wantFlag) < 0) return false;
    var haystack = card.dataset.text;
    return words.every(function (w) { return haystack.indexOf(w) >= 0; });
  }

  function apply() {
    var words = text.value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    cards.forEach(function (card) {
      var show = matches(card, status.value, flag.value, words);
      card.classList.toggle("hidden", !show);
      shown += show ? 1 : 0;
    });
    count.value = shown + " of " + cards.length + " shown";
  }

  [status, flag].forEach(function (el) { el.addEventListener("change", apply); });
  text.addEventListener("input", apply);
  apply();
})();
