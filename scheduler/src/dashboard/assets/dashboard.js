// The scheduler dashboard's only script: asks before a destructive action
// (forms with data-confirm). Everything else works without it.
document.addEventListener("submit", function (event) {
  var message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});
