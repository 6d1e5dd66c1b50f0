// Sign with a passkey: ask the server for a fresh WebAuthn challenge, let the browser's authenticator answer it
// (verifying the person: PIN or biometric), put the answer in the signing form's hidden "passkey" field and
// submit the form as its own submit button would (htmx included). The server checks the answer at signing.
(function () {
  if (window.pldPasskeySign) return // included once per signing form; one listener is enough
  window.pldPasskeySign = true

  function csrfToken (form) {
    const field = form.querySelector('input[name=csrfmiddlewaretoken]')
    if (field) return field.value
    const headers = document.body.getAttribute('hx-headers')
    return headers ? JSON.parse(headers)['X-CSRFToken'] : ''
  }

  function say (button, text) {
    let note = button.parentElement.querySelector('.passkey-error')
    if (!note) {
      note = document.createElement('span')
      note.className = 'passkey-error error'
      note.setAttribute('role', 'alert')
      button.parentElement.appendChild(note)
    }
    note.textContent = text
  }

  document.addEventListener('click', async function (event) {
    const button = event.target.closest('[data-passkey-sign]')
    if (!button) return
    event.preventDefault()
    const form = button.form
    const input = document.getElementById(button.dataset.passkeySign)
    try {
      const response = await fetch(button.dataset.optionsUrl, {
        method: 'POST', headers: { 'X-CSRFToken': csrfToken(form), Accept: 'application/json' }, credentials: 'same-origin'
      })
      if (!response.ok) throw new Error('the server gave no passkey challenge (' + response.status + ')')
      const data = await response.json()
      const credential = await window.webauthnJSON.get(data.request_options)
      input.value = JSON.stringify(credential)
      form.requestSubmit(form.querySelector('button[type=submit], input[type=submit]') || undefined)
    } catch (error) {
      say(button, 'The passkey did not answer: ' + error.message + '. Nothing was signed.')
    }
  })
})()
