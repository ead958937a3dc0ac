// The synthetic question page from the keyboard: a accepts, x rejects, e edits the question,
// ? shows the list. The page works without it.
(function () {
  'use strict';

  function isTyping(el) {
    if (!el) return false;
    if (el.isContentEditable || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT') return true;
    return el.tagName === 'INPUT' && el.type !== 'radio' && el.type !== 'checkbox';
  }

  function init() {
    var help = document.getElementById('synthetic-shortcuts');
    var form = document.getElementById('synthetic-form');
    if (!help || !form) return;
    document.addEventListener('keydown', function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
      if (isTyping(event.target)) {
        if (event.key === 'Escape') event.target.blur();
        return;
      }
      var key = event.key;
      if (key === '?') {
        help.open = !help.open;
      } else if (key === 'e') {
        var box = form.querySelector('textarea[name="question"]');
        if (!box) return;
        box.focus();
      } else if (key === 'a' || key === 'x') {
        var button = form.querySelector('button[data-shortcut="' + key + '"]');
        if (!button) return;
        if (form.requestSubmit) form.requestSubmit(button); else button.click();
      } else {
        return;
      }
      event.preventDefault();
    });
  }

  document.addEventListener('DOMContentLoaded', init);
})();
