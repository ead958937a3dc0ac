// Behaviour shared by every page. No inline scripts anywhere, so a strict CSP can forbid them.
(function () {
  'use strict';

  // Forms that destroy something ask first: <form data-confirm="Delete …?">.
  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    var question = form.getAttribute('data-confirm');
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // Side panels are open on wide screens and start closed on narrow ones.
  var narrow = window.matchMedia('(max-width: 960px)');
  function fitPanels() {
    document.querySelectorAll('details[data-narrow-closed]').forEach(function (panel) {
      panel.open = !narrow.matches;
    });
  }
  document.addEventListener('DOMContentLoaded', fitPanels);
  narrow.addEventListener('change', fitPanels);

  // "Copy" buttons copy the text of the field they name: <button data-copy-from="selector">.
  document.addEventListener('click', function (event) {
    var button = event.target instanceof Element ? event.target.closest('[data-copy-from]') : null;
    if (!button) return;
    var field = document.querySelector(button.getAttribute('data-copy-from'));
    if (!field || !navigator.clipboard) return;
    navigator.clipboard.writeText(field.value !== undefined ? field.value : field.textContent).then(function () {
      var label = button.textContent;
      button.textContent = 'Copied';
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  // A dropdown menu closes when focus or a click goes elsewhere.
  document.addEventListener('click', function (event) {
    document.querySelectorAll('details.dropdown[open]').forEach(function (menu) {
      if (!menu.contains(event.target)) menu.open = false;
    });
  });
  document.addEventListener('keydown', function (event) {
    if (event.key !== 'Escape') return;
    document.querySelectorAll('details.dropdown[open]').forEach(function (menu) {
      menu.open = false;
      var summary = menu.querySelector('summary');
      if (summary) summary.focus();
    });
  });
})();
