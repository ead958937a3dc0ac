// The conversation page: keyboard sending, the Stop button, scrolling and connection messages.
// Frames arrive over the websocket as htmx out-of-band swaps; this only reacts to their kind.
(function () {
  'use strict';

  var FRAME = /data-frame="(start|token|end|error)"/;
  var CLOSE_MESSAGES = {
    4401: 'Your session has ended. Reload the page to sign in again.',
    4403: 'Your account cannot use chat. Ask an administrator for the agent role.',
    4404: 'This conversation no longer exists. Start a new one from the list.'
  };

  function init() {
    var chat = document.getElementById('chat');
    if (!chat) return;
    var scroller = document.getElementById('thread-scroll');
    var composer = document.getElementById('composer');
    var textarea = composer.querySelector('textarea[name="message"]');
    var stopForm = document.getElementById('stop-form');
    var status = document.getElementById('chat-status');
    var lastSent = null;
    var stick = true;

    function toBottom() { scroller.scrollTop = scroller.scrollHeight; }
    function nearBottom() {
      return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
    }
    function setStreaming(on) {
      chat.toggleAttribute('data-streaming', on);
      stopForm.hidden = !on;
      status.textContent = on ? 'Writing the answer…' : '';
    }

    textarea.addEventListener('keydown', function (event) {
      if (event.key !== 'Enter' || event.shiftKey || event.isComposing) return;
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      event.preventDefault();
      if (textarea.value.trim()) composer.requestSubmit();
    });

    composer.addEventListener('htmx:wsAfterSend', function () {
      lastSent = textarea.value;
      textarea.value = '';
      stick = true;
    });

    chat.addEventListener('htmx:wsBeforeMessage', function () {
      stick = nearBottom();
    });

    chat.addEventListener('htmx:wsAfterMessage', function (event) {
      var message = event.detail.message;
      var match = typeof message === 'string' ? FRAME.exec(message.slice(0, 160)) : null;
      var kind = match ? match[1] : '';
      if (kind === 'start') {
        lastSent = null;
        setStreaming(true);
        toBottom();
      } else if (kind === 'token') {
        if (stick) toBottom();
      } else if (kind === 'end' || kind === 'error') {
        var aboutTurn = message.indexOf('id="answer-') !== -1;
        if (aboutTurn) {
          setStreaming(false);
          if (stick) toBottom();
          textarea.focus();
        } else if (lastSent !== null && !textarea.value) {
          // The question was refused (too long, or sent while busy): give it back to edit.
          textarea.value = lastSent;
          lastSent = null;
        }
      }
    });

    chat.addEventListener('htmx:wsOpen', function () {
      chat.setAttribute('data-socket', 'open');
      status.textContent = '';
    });
    chat.addEventListener('htmx:wsClose', function (event) {
      var code = event.detail.event && event.detail.event.code;
      chat.setAttribute('data-socket', 'closed');
      if (chat.hasAttribute('data-streaming')) {
        // The server stops and saves an answer whose page went away; say so in its bubble.
        var bubble = chat.querySelector('.msg-assistant[aria-busy="true"]');
        if (bubble) {
          bubble.removeAttribute('aria-busy');
          var note = document.createElement('p');
          note.className = 'answer-error';
          note.textContent = 'The connection dropped, so this answer stopped. What arrived is saved; reload to see it.';
          bubble.appendChild(note);
          var typing = bubble.querySelector('.typing');
          if (typing) typing.remove();
        }
      }
      setStreaming(false);
      status.textContent = CLOSE_MESSAGES[code] ||
        (code === 1000 ? '' : 'Connection lost. Reconnecting…');
    });

    toBottom();
    textarea.focus();
  }

  document.addEventListener('DOMContentLoaded', init);
})();
