// The tenant-admin page: every action is a call to this workspace's JSON API with the session
// token (kept in sessionStorage, so it ends with the tab). Text from the API is only ever put
// into the page as text (textContent), never as HTML.
'use strict';

const TOKEN_KEY = 'silo_token';
const byId = (id) => document.getElementById(id);

function element(tag, text, attributes) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  return node;
}

function row(cells) {
  const tr = document.createElement('tr');
  for (const cell of cells) {
    const td = document.createElement('td');
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell ?? '';
    tr.appendChild(td);
  }
  return tr;
}

function describe(error) {
  let message = error.message || error.code || 'The request failed.';
  if (error.fields) {
    message += ' ' + Object.entries(error.fields).map(([field, problem]) => `${field} ${problem}`).join('; ');
  }
  return message;
}

function say(id, message, isError) {
  const node = byId(id);
  node.textContent = message || '';
  node.classList.toggle('error', Boolean(isError));
}

async function api(method, path, body) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  if (response.status !== 204) {
    try { data = await response.json(); } catch (_) { data = null; }
  }
  if (!response.ok) {
    const error = (data && data.error) || { message: `The request failed (${response.status}).` };
    if (response.status === 401 && token && path !== '/api/v1/invitations/accept') signOut();
    const failure = new Error(describe(error));
    failure.code = error.code;
    throw failure;
  }
  return data;
}

// Runs `action`, showing its error (if any) in the status line `statusId`.
async function attempt(statusId, action) {
  try {
    say(statusId, '');
    await action();
  } catch (error) {
    say(statusId, error.message, true);
  }
}

function applyBranding(branding) {
  byId('brand-style').textContent = `:root{--brand:${branding.primary_color}}`;
  byId('brand-name').textContent = branding.display_name;
  document.title = `${branding.display_name} · Settings`;
  document.body.dataset.displayName = branding.display_name;
  const logo = byId('brand-logo');
  if (branding.logo_url) { logo.src = branding.logo_url; logo.hidden = false; } else { logo.removeAttribute('src'); logo.hidden = true; }
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  // End the back office's browser session too (same origin, so the cross-site check passes).
  if (document.body.dataset.session) {
    delete document.body.dataset.session;
    fetch('/sign-out', { method: 'POST' });
  }
  byId('admin').hidden = true;
  byId('login').hidden = false;
  byId('sign-out').hidden = true;
  byId('me').textContent = '';
}

async function loadPlan() {
  const plan = await api('GET', '/api/v1/plan');
  byId('plan').textContent = plan.plan.name;
  byId('modules').textContent = plan.modules.join(', ');
  const body = byId('usage').tBodies[0];
  body.replaceChildren();
  for (const [what, usage] of Object.entries(plan.usage)) {
    body.appendChild(row([what, usage.used, usage.limit === null ? 'unlimited' : usage.limit]));
  }
}

async function loadUsers() {
  const users = await api('GET', '/api/v1/users?limit=200');
  const body = byId('users').tBodies[0];
  body.replaceChildren();
  for (const user of users.data.filter((user) => user.is_active)) {
    const role = element('select', null, { 'data-user': user.id, class: 'user-role' });
    for (const choice of ['owner', 'staff', 'read_only']) {
      const option = element('option', choice, { value: choice });
      option.selected = choice === user.role;
      role.appendChild(option);
    }
    role.addEventListener('change', async () => {
      await attempt('users-status', async () => {
        await api('PATCH', `/api/v1/users/${user.id}`, { role: role.value });
        say('users-status', `${user.email} is now ${role.value}.`);
      });
      // Shows the role in force (the old one if the change was refused).
      await loadUsers().catch(() => {});
    });
    const remove = element('button', 'Remove', { type: 'button', class: 'user-remove', 'data-user': user.id });
    remove.addEventListener('click', () => attempt('users-status', async () => {
      if (!window.confirm(`Remove ${user.email} from this workspace?`)) return;
      await api('DELETE', `/api/v1/users/${user.id}`);
      say('users-status', `${user.email} was removed.`);
      await Promise.all([loadUsers(), loadPlan()]);
    }));
    body.appendChild(row([user.email, user.display_name, role, remove]));
  }
}

async function loadBranding() {
  const branding = await api('GET', '/api/v1/branding');
  applyBranding(branding);
  byId('branding-display-name').value = branding.custom ? branding.display_name : '';
  byId('branding-logo-url').value = branding.logo_url || '';
  byId('branding-color').value = branding.custom ? branding.primary_color : '';
}

async function loadDomains() {
  const domains = await api('GET', '/api/v1/domains');
  const body = byId('domains').tBodies[0];
  body.replaceChildren();
  for (const domain of domains) {
    const remove = element('button', 'Remove', { type: 'button', class: 'domain-remove' });
    remove.addEventListener('click', () => attempt('domains-status', async () => {
      if (!window.confirm(`Remove ${domain.domain}? It stops reaching this workspace at once.`)) return;
      await api('DELETE', `/api/v1/domains/${encodeURIComponent(domain.domain)}`);
      await loadDomains();
    }));
    body.appendChild(row([domain.domain, element('code', domain.verification_token), domain.verified ? 'yes' : 'not yet', remove]));
  }
}

async function loadKeys() {
  const keys = await api('GET', '/api/v1/api-keys');
  const body = byId('keys').tBodies[0];
  body.replaceChildren();
  for (const key of keys.filter((key) => !key.revoked_at)) {
    const revoke = element('button', 'Revoke', { type: 'button', class: 'key-revoke' });
    revoke.addEventListener('click', () => attempt('keys-status', async () => {
      if (!window.confirm(`Revoke the key "${key.name}"? Anything using it stops at once.`)) return;
      await api('DELETE', `/api/v1/api-keys/${key.id}`);
      await loadKeys();
    }));
    body.appendChild(row([key.name, key.prefix, key.role, key.last_used_at || 'never', revoke]));
  }
}

async function loadIntegrations() {
  const integrations = await api('GET', '/api/v1/integrations');
  const body = byId('integrations').tBodies[0];
  body.replaceChildren();
  for (const integration of integrations) {
    const remove = element('button', 'Remove', { type: 'button', class: 'integration-remove' });
    remove.addEventListener('click', () => attempt('integrations-status', async () => {
      if (!window.confirm(`Remove the ${integration.name} credential?`)) return;
      await api('DELETE', `/api/v1/integrations/${encodeURIComponent(integration.name)}`);
      await loadIntegrations();
    }));
    body.appendChild(row([integration.name, '…' + integration.last4, integration.updated_at, remove]));
  }
}

async function showAdmin() {
  const me = await api('GET', '/api/v1/me');
  byId('me').textContent = me.email ? `${me.email} (${me.role})` : '';
  byId('login').hidden = true;
  byId('admin').hidden = false;
  byId('sign-out').hidden = false;
  if (me.role !== 'owner') {
    say('plan-status', 'Only owners manage the workspace; you are signed in as ' + me.role + '.', true);
    return;
  }
  // Each part loads on its own: a module the plan lacks only fails its own section.
  await Promise.all([
    attempt('plan-status', loadPlan),
    attempt('users-status', loadUsers),
    attempt('branding-status', loadBranding),
    attempt('domains-status', loadDomains),
    attempt('keys-status', loadKeys),
    attempt('integrations-status', loadIntegrations),
  ]);
}

function onSubmit(formId, statusId, action) {
  byId(formId).addEventListener('submit', (event) => {
    event.preventDefault();
    attempt(statusId, action);
  });
}

onSubmit('login-form', 'login-status', async () => {
  const answer = await api('POST', '/api/v1/sessions', {
    email: byId('login-email').value,
    password: byId('login-password').value,
  });
  byId('login-password').value = '';
  sessionStorage.setItem(TOKEN_KEY, answer.token);
  await showAdmin();
});

byId('sign-out').addEventListener('click', signOut);

onSubmit('invite-form', 'users-status', async () => {
  byId('invitation-url').textContent = '';
  const invitation = await api('POST', '/api/v1/users/invitations', {
    email: byId('invite-email').value,
    role: byId('invite-role').value,
  });
  byId('invitation-url').textContent = invitation.invitation_url;
  say('users-status', `Invitation for ${invitation.email} (${invitation.role}) valid until ${invitation.expires_at}.`);
});

onSubmit('branding-form', 'branding-status', async () => {
  const orNull = (id) => byId(id).value.trim() || null;
  const branding = await api('PUT', '/api/v1/branding', {
    display_name: orNull('branding-display-name'),
    logo_url: orNull('branding-logo-url'),
    primary_color: orNull('branding-color'),
  });
  applyBranding(branding);
  say('branding-status', 'Saved.');
});

onSubmit('domain-form', 'domains-status', async () => {
  byId('domain-token').textContent = '';
  const domain = await api('POST', '/api/v1/domains', { domain: byId('domain-name').value });
  byId('domain-token').textContent = domain.verification_token;
  say('domains-status', `Publish the token as a TXT record at _silo-challenge.${domain.domain}; an operator then verifies it.`);
  await loadDomains();
});

onSubmit('key-form', 'keys-status', async () => {
  byId('key-secret').textContent = '';
  const key = await api('POST', '/api/v1/api-keys', {
    name: byId('key-name').value,
    role: byId('key-role').value,
  });
  byId('key-secret').textContent = key.secret;
  await loadKeys();
});

onSubmit('integration-form', 'integrations-status', async () => {
  const name = byId('integration-name').value.trim();
  await api('PUT', `/api/v1/integrations/${encodeURIComponent(name)}`, {
    secret: byId('integration-secret').value,
  });
  byId('integration-secret').value = '';
  say('integrations-status', `Saved ${name}.`);
  await loadIntegrations();
});

// An invitation link carries its token in the fragment (never sent to a server).
const invitation = new URLSearchParams(window.location.hash.slice(1)).get('invitation');
if (invitation) {
  byId('accept').hidden = false;
  onSubmit('accept-form', 'accept-status', async () => {
    const user = await api('POST', '/api/v1/invitations/accept', {
      token: invitation,
      password: byId('accept-password').value,
      display_name: byId('accept-display-name').value.trim() || null,
    });
    byId('accept-password').value = '';
    history.replaceState(null, '', window.location.pathname);
    byId('accept').hidden = true;
    byId('login-email').value = user.email;
    say('login-status', `Welcome, ${user.email}: sign in with your new password.`);
  });
}

// Signed in to the back office already: start with that session.
if (!sessionStorage.getItem(TOKEN_KEY) && document.body.dataset.session) {
  sessionStorage.setItem(TOKEN_KEY, document.body.dataset.session);
}
if (sessionStorage.getItem(TOKEN_KEY)) {
  attempt('login-status', showAdmin);
}
