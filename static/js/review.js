// The review item page from the keyboard: 1-5 grade the highlighted rubric row, j/k move between
// rows, s submits, n skips, r releases, ? shows the list. The page works without it.
(function () {
  'use strict';

  function isTyping(el) {
    if (!el) return false;
    if (el.isContentEditable || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT') return true;
    return el.tagName === 'INPUT' && el.type !== 'radio' && el.type !== 'checkbox';
  }

  function init() {
    var help = document.getElementById('review-shortcuts');
    if (!help) return;
    var form = document.getElementById('review-form');
    var rows = form ? Array.prototype.slice.call(form.querySelectorAll('[data-rubric-row]')) : [];
    var current = 0;

    function highlight(index) {
      current = Math.max(0, Math.min(rows.length - 1, index));
      rows.forEach(function (row, i) { row.classList.toggle('is-current', i === current); });
    }
    function focusRow(index) {
      if (!rows.length) return;
      highlight(index);
      var input = rows[current].querySelector('input:checked') || rows[current].querySelector('input');
      if (input) input.focus();
    }
    function press(key) {
      var button = form && form.querySelector('button[data-shortcut="' + key + '"]');
      if (!button) return false;
      // requestSubmit keeps the browser's own checks (every rubric row graded) for Submit.
      if (form.requestSubmit) form.requestSubmit(button); else button.click();
      return true;
    }

    rows.forEach(function (row, i) {
      row.addEventListener('focusin', function () { highlight(i); });
    });
    if (rows.length) highlight(0);

    document.addEventListener('keydown', function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
      if (isTyping(event.target)) {
        if (event.key === 'Escape') event.target.blur();
        return;
      }
      var key = event.key;
      if (key === '?') {
        help.open = !help.open;
      } else if (/^[1-5]$/.test(key) && rows.length) {
        var radio = rows[current].querySelector('input[value="' + key + '"]');
        if (!radio) return;
        radio.checked = true;
        focusRow(current + 1 < rows.length ? current + 1 : current);
      } else if (key === 'j' && rows.length) {
        focusRow(current + 1);
      } else if (key === 'k' && rows.length) {
        focusRow(current - 1);
      } else if (key === 's' || key === 'n' || key === 'r') {
        if (!press(key)) return;
      } else {
        return;
      }
      event.preventDefault();
    });
  }

  document.addEventListener('DOMContentLoaded', init);
})();
