// The web app: plain JavaScript, no build step, served by the main backend.
//
// Token handling follows browser guidance: the access token lives only in
// this closure's memory; the refresh token never reaches JavaScript. The
// auth service keeps it in an HttpOnly, SameSite=Strict cookie (cookie mode:
// `X-Token-Transport: cookie`), and a reload signs in again through it.
// Nothing is written to localStorage or sessionStorage.
"use strict";

(() => {
  const config = { authUrl: "" };
  let access = null; // { token, userId, sessionId }
  let refreshTimer = null;
  let refreshing = null; // the refresh in flight, shared by concurrent callers
  let me = null; // the main backend's profile of the caller

  // ---------- DOM helpers (text only: no user data goes through innerHTML)

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v === null || v === undefined) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat(Infinity)) {
      if (c !== null && c !== undefined && c !== false) el.append(c);
    }
    return el;
  }

  const main = () => document.getElementById("main");
  let uid = 0;

  function field(label, attrs, hint) {
    const id = `f${++uid}`;
    const hintId = hint ? `${id}-hint` : null;
    return [
      h("label", { for: id, text: label }),
      h("input", { id, ...attrs, "aria-describedby": hintId }),
      hint ? h("p", { id: hintId, class: "hint", text: hint }) : null,
    ];
  }

  function show(title, ...content) {
    document.title = `${title} · Tasks`;
    const m = main();
    m.replaceChildren(h("h1", { text: title }), ...content);
    m.focus();
  }

  function announce(message) {
    const s = document.getElementById("status");
    s.textContent = "";
    // A fresh text node is announced even when the message repeats.
    setTimeout(() => (s.textContent = message), 30);
  }

  // A form whose submit runs `action(values)`; problems are shown in the
  // form's own alert region and focus goes there.
  function form(label, fields, submitText, action, extra) {
    const error = h("p", { class: "error", role: "alert" });
    const button = h("button", { type: "submit", text: submitText });
    const f = h("form", { class: "card", "aria-label": label, novalidate: true }, fields, button, error, extra || []);
    f.addEventListener("submit", async (e) => {
      e.preventDefault();
      error.textContent = "";
      button.disabled = true;
      const values = Object.fromEntries(new FormData(f).entries());
      try {
        await action(values, f);
      } catch (err) {
        error.textContent = message(err);
        error.setAttribute("tabindex", "-1");
        error.focus();
      } finally {
        button.disabled = false;
      }
    });
    return f;
  }

  // ---------- HTTP

  class Problem extends Error {
    constructor(status, body) {
      super(body.detail || body.title || `HTTP ${status}`);
      this.status = status;
      this.code = body.code || "";
    }
  }

  // Problem details to words a person can act on.
  const FRIENDLY = {
    invalid_credentials: "The email or password is incorrect.",
    email_taken: "An account with this email already exists. Sign in instead?",
    too_many_attempts: "Too many failed sign-ins. Wait a while, or reset your password.",
    too_many_requests: "Too many requests. Wait a minute and try again.",
    invalid_token: "This link is invalid, already used or expired. Ask for a new one.",
    account_locked: "This account is locked. Contact an administrator.",
    auth_unavailable: "The sign-in service is not answering. Try again shortly.",
    service_unavailable: "The service is busy or restarting. Try again shortly.",
    invalid_code: "That code is not right. Use the current code from your app.",
    account_exists: "An account with this email already exists. Sign in with your password, then link this provider under Security.",
    last_sign_in_method: "This is your last way to sign in. Link another provider or set a password (Forgot your password?) first.",
    reauthentication_required: "For your safety, sign out and in again before linking a provider.",
    invalid_credential: "The passkey was not accepted. Try again.",
    passkeys_disabled: "Passkeys are not set up on this site.",
    email_not_allowed: "Accounts with this email address are not allowed here.",
  };

  // What the provider sign-in's `#error=` codes mean.
  const PROVIDER_ERRORS = {
    access_denied: "You cancelled the sign-in at the provider.",
    provider_unavailable: "The provider is not answering. Try again shortly, or sign in another way.",
    provider_error: "The provider refused the sign-in. Try again.",
    invalid_id_token: "The provider's answer could not be trusted, so you were not signed in.",
    email_missing: "The provider did not share a usable email address, so no account could be used.",
    identity_taken: "That provider account is already linked to another account.",
  };

  function message(err) {
    if (err instanceof Problem) {
      const friendly = FRIENDLY[err.code];
      if (err.code === "too_many_attempts" && err.message) return `${friendly} (${err.message})`;
      return friendly || err.message;
    }
    return "The network is unreachable or the server did not answer. Try again.";
  }

  async function parse(res) {
    if (res.status === 204 || res.status === 202) return null;
    const type = res.headers.get("content-type") || "";
    const body = type.includes("json") ? await res.json() : {};
    if (!res.ok) throw new Problem(res.status, body);
    return body;
  }

  // Calls the auth service. Cookie mode on the calls that hand out or end
  // sessions, so the browser stores or drops the refresh cookie.
  async function auth(path, { method = "POST", body, bearer = true, cookie = false } = {}) {
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (cookie) headers["X-Token-Transport"] = "cookie";
    if (bearer) headers.Authorization = `Bearer ${await token()}`;
    const res = await fetch(config.authUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: cookie ? "include" : "omit",
    });
    return parse(res);
  }

  // Calls this (main) backend with the access token; on a 401 refreshes once
  // and retries, since the token may have expired while the tab slept.
  async function api(path, { method = "GET", body } = {}, retried = false) {
    const headers = { Authorization: `Bearer ${await token()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (res.status === 401 && !retried) {
      if (await refresh()) return api(path, { method, body }, true);
      signedOut("Your session ended. Please sign in again.");
      throw new Problem(401, { detail: "Your session ended. Please sign in again." });
    }
    return parse(res);
  }

  async function token() {
    if (!access) throw new Problem(401, { detail: "Please sign in." });
    return access.token;
  }

  // ---------- session: tokens in memory, silent refresh before expiry

  function accept(tokens) {
    access = { token: tokens.access_token, userId: tokens.user_id, sessionId: tokens.session_id };
    clearTimeout(refreshTimer);
    // Refresh at 80% of the lifetime (at least 5 s ahead of expiry).
    const seconds = Math.max(5, Math.min(tokens.expires_in * 0.8, tokens.expires_in - 5));
    refreshTimer = setTimeout(() => refresh(), seconds * 1000);
  }

  // Exchanges the refresh cookie for a new pair; false when there is no
  // live session. Concurrent callers share one request.
  function refresh() {
    if (!refreshing) {
      refreshing = (async () => {
        try {
          const tokens = await auth("/v1/token/refresh", { bearer: false, cookie: true });
          accept(tokens);
          return true;
        } catch (err) {
          if (err instanceof Problem && err.status < 500) {
            access = null;
            return false;
          }
          throw err;
        } finally {
          refreshing = null;
        }
      })();
    }
    return refreshing;
  }

  // Ends this session (or every one) and resolves only once the auth
  // service confirmed it. Cookie mode: the service also finds the session
  // by the refresh cookie, so an access token that expired while the tab
  // slept does not leave the session alive; a 401 all the same (say, for
  // "everywhere", which needs the bearer) refreshes once and retries.
  async function endSession(path) {
    const send = () => fetch(config.authUrl + path, {
      method: "POST",
      headers: Object.assign({ "X-Token-Transport": "cookie" }, access ? { Authorization: `Bearer ${access.token}` } : {}),
      credentials: "include",
    });
    let res = await send();
    if (res.status === 401 && await refresh()) res = await send();
    await parse(res);
  }

  function signedOut(note) {
    access = null;
    me = null;
    clearTimeout(refreshTimer);
    document.getElementById("nav").hidden = true;
    if (note) announce(note);
    location.hash = "#signin";
    route();
  }

  async function signedIn(tokens, note) {
    if (tokens) accept(tokens);
    me = await loadProfile();
    document.getElementById("nav").hidden = false;
    if (note) announce(note);
    if (["", "#signin", "#signup", "#forgot"].includes(location.hash)) location.hash = "#tasks";
    else route();
  }

  // The mirror may be a moment behind a brand-new account: the main
  // backend syncs the user on first sight, but retry briefly all the same.
  async function loadProfile() {
    for (let i = 0; ; i++) {
      try {
        return await api("/v1/me");
      } catch (err) {
        if (i >= 5 || !(err instanceof Problem) || err.status < 500) throw err;
        await new Promise((r) => setTimeout(r, 300));
      }
    }
  }

  // ---------- signed-out screens

  function signIn() {
    let needsCode = false;
    const codeBox = h("div", { hidden: true }, field("Authentication code", { name: "totp_code", autocomplete: "one-time-code", inputmode: "numeric" }, "The 6-digit code from your authenticator app, or one of your recovery codes."));
    const f = form("Sign in", [
      field("Email", { name: "email", type: "email", autocomplete: "username", required: true }),
      field("Password", { name: "password", type: "password", autocomplete: "current-password", required: true }),
      codeBox,
    ], "Sign in", async (v) => {
      const body = { email: v.email, password: v.password };
      if (needsCode && v.totp_code) body.totp_code = v.totp_code.trim();
      try {
        const tokens = await auth("/v1/login", { body, bearer: false, cookie: true });
        await signedIn(tokens, "Signed in.");
      } catch (err) {
        if (err instanceof Problem && err.code === "mfa_required" && !needsCode) {
          needsCode = true;
          codeBox.hidden = false;
          codeBox.querySelector("input").focus();
          announce("Enter the code from your authenticator app.");
          return;
        }
        throw err;
      }
    });
    const others = h("section", { "aria-label": "Other ways to sign in", class: "providers" });
    const passkeyError = h("p", { class: "error", role: "alert" });
    const passkey = window.PublicKeyCredential ? h("section", { "aria-label": "Passkey", class: "providers" },
      h("button", { type: "button", class: "secondary wide", text: "Sign in with a passkey", onclick: async () => {
        passkeyError.textContent = "";
        try { await passkeySignIn(f.querySelector("input[name=email]").value.trim()); }
        catch (err) { passkeyError.textContent = err instanceof Problem ? message(err) : "The passkey sign-in was cancelled or failed."; }
      } }), passkeyError) : null;
    show("Sign in", f, passkey, others,
      h("p", { class: "switch" }, h("a", { href: "#signup", text: "Create an account" }), " · ", h("a", { href: "#forgot", text: "Forgot your password?" })));
    providerButtons(others);
  }

  // ---------- passkeys (WebAuthn): the auth service's options carry binary
  // fields in base64url; the browser's API wants ArrayBuffers and back.

  const b64uToBuf = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4)), (c) => c.charCodeAt(0)).buffer;
  const bufToB64u = (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

  function creationOptions(o) {
    const pk = { ...o.publicKey, challenge: b64uToBuf(o.publicKey.challenge), user: { ...o.publicKey.user, id: b64uToBuf(o.publicKey.user.id) } };
    pk.excludeCredentials = (pk.excludeCredentials || []).map((c) => ({ ...c, id: b64uToBuf(c.id) }));
    return { publicKey: pk };
  }

  function requestOptions(o) {
    const pk = { ...o.publicKey, challenge: b64uToBuf(o.publicKey.challenge) };
    pk.allowCredentials = (pk.allowCredentials || []).map((c) => ({ ...c, id: b64uToBuf(c.id) }));
    return { publicKey: pk };
  }

  function credentialJson(c) {
    const r = c.response;
    const response = { clientDataJSON: bufToB64u(r.clientDataJSON) };
    if (r.attestationObject) response.attestationObject = bufToB64u(r.attestationObject);
    if (r.authenticatorData) response.authenticatorData = bufToB64u(r.authenticatorData);
    if (r.signature) response.signature = bufToB64u(r.signature);
    if (r.userHandle) response.userHandle = bufToB64u(r.userHandle);
    return { id: c.id, rawId: bufToB64u(c.rawId), type: c.type, response, extensions: {} };
  }

  // Sign-in with a passkey: with the email typed so far (its passkeys are
  // offered), or without (the browser lists this site's passkeys).
  async function passkeySignIn(email) {
    const start = await auth("/v1/passkeys/login/start", { body: email ? { email } : {}, bearer: false });
    const credential = await navigator.credentials.get(requestOptions(start.options));
    const tokens = await auth("/v1/passkeys/login/finish", { body: { challenge_id: start.challenge_id, credential: credentialJson(credential) }, bearer: false, cookie: true });
    await signedIn(tokens, "Signed in with a passkey.");
  }

  // Security: the passkeys of this account.
  function passkeysSection() {
    const list = h("ul", { class: "items", "aria-label": "Passkeys" });
    const reload = async () => {
      const rows = await auth("/v1/passkeys", { method: "GET" });
      list.replaceChildren(...rows.map((p) => h("li", { "data-passkey": p.id },
        h("div", { class: "grow" }, h("span", { text: p.name }), h("p", { class: "hint", text: p.last_used_at ? `last used ${new Date(p.last_used_at).toLocaleString()}` : "not used yet" })),
        h("button", { type: "button", class: "danger", text: "Remove", "aria-label": `Remove passkey ${p.name}`, onclick: async () => {
          try { await auth(`/v1/passkeys/${p.id}`, { method: "DELETE" }); await reload(); announce("The passkey is removed."); }
          catch (err) { announce(message(err)); }
        } }))));
      if (!rows.length) list.append(h("li", { class: "hint", text: "No passkey yet." }));
    };
    const add = form("Add a passkey", [
      field("Name", { name: "name", maxlength: 100, value: "This device" }, "To tell your passkeys apart."),
      field("Password", { name: "passkey_password", type: "password", autocomplete: "current-password" }, "Your account's password, if it has one: a passkey is a way in."),
    ], "Add a passkey", async (v) => {
      const start = await auth("/v1/passkeys/register/start", { body: v.passkey_password ? { current_password: v.passkey_password } : {} });
      const credential = await navigator.credentials.create(creationOptions(start.options));
      await auth("/v1/passkeys/register/finish", { body: { challenge_id: start.challenge_id, credential: credentialJson(credential), name: v.name } });
      await reload();
      announce("The passkey is added: you can sign in with it.");
    });
    reload().catch((err) => announce(message(err)));
    return h("div", {}, list, window.PublicKeyCredential ? add : h("p", { class: "hint", text: "This browser does not support passkeys." }));
  }

  // ---------- sign-in with other providers

  let providerList = null;
  async function providers() {
    if (!providerList) providerList = await auth("/v1/oauth/providers", { method: "GET", bearer: false });
    return providerList;
  }

  // Where the provider sends the browser back: a page of this app that
  // exchanges the one-time code in its fragment.
  const OAUTH_LANDING = () => `${location.origin}/account/oauth`;

  // "Continue with …" buttons: the browser goes to the auth service, which
  // sends it on to the provider.
  async function providerButtons(section) {
    let list = [];
    try { list = await providers(); } catch (_) { return; }
    section.replaceChildren(...list.map((p) => h("button", { type: "button", class: "secondary wide", text: `Continue with ${p.display_name}`, onclick: () => {
      location.assign(`${config.authUrl}/v1/oauth/${encodeURIComponent(p.name)}/authorize?return_to=${encodeURIComponent(OAUTH_LANDING())}`);
    } })));
  }

  // The provider's way back: `#code=` (exchanged for a session, with the
  // two-factor code when the account has one), `#linked=` or `#error=`.
  async function oauthLanding() {
    const params = new URLSearchParams(location.hash.slice(1));
    // The one-time code leaves the address bar (and history) at once.
    history.replaceState(null, "", "/account/oauth");
    const back = h("p", {}, h("a", { href: "/#signin", text: "Back to sign in" }));
    const error = params.get("error");
    if (error) {
      show("Sign-in did not finish", h("p", { class: "error", role: "alert", text: PROVIDER_ERRORS[error] || `The sign-in failed (${error}).` }), back);
      return true;
    }
    if (params.get("linked")) {
      // The session comes back through the refresh cookie, on Security.
      history.replaceState(null, "", "/#security");
      announce("The provider is linked to your account.");
      return false;
    }
    const code = params.get("code");
    if (!code) {
      show("Sign-in did not finish", h("p", { class: "error", role: "alert", text: "This page needs the provider's answer. Start the sign-in again." }), back);
      return true;
    }
    const done = async (res) => {
      history.replaceState(null, "", "/");
      await signedIn(res.tokens, res.created ? "Account created." : "Signed in.");
    };
    show("Signing in", h("p", { text: "One moment…" }));
    try {
      await done(await auth("/v1/oauth/exchange", { body: { code }, bearer: false, cookie: true }));
    } catch (err) {
      if (!(err instanceof Problem && err.code === "mfa_required")) {
        show("Sign-in did not finish", h("p", { class: "error", role: "alert", text: message(err) }), back);
        return true;
      }
      show("Two-factor sign-in", form("Two-factor sign-in", [
        field("Authentication code", { name: "totp_code", autocomplete: "one-time-code", inputmode: "numeric", required: true }, "The 6-digit code from your authenticator app, or one of your recovery codes."),
      ], "Sign in", async (v) => done(await auth("/v1/oauth/exchange", { body: { code, totp_code: v.totp_code.trim() }, bearer: false, cookie: true }))), back);
    }
    return true;
  }

  // Security: the provider identities that sign in to this account.
  function identitiesSection() {
    const list = h("ul", { class: "items", "aria-label": "Linked sign-in providers" });
    const names = {};
    const reload = async () => {
      const rows = await auth("/v1/me/identities", { method: "GET" });
      list.replaceChildren(...rows.map((i) => h("li", { "data-identity": i.id },
        h("div", { class: "grow" }, h("span", { text: names[i.provider] || i.provider }), h("p", { class: "hint", text: i.email || i.subject })),
        h("button", { type: "button", class: "danger", text: "Remove", "aria-label": `Remove ${names[i.provider] || i.provider} sign-in`, onclick: async () => {
          try { await auth(`/v1/me/identities/${i.id}`, { method: "DELETE" }); await reload(); announce("That provider no longer signs in to your account."); }
          catch (err) { announce(message(err)); }
        } }))));
      if (!rows.length) list.append(h("li", { class: "hint", text: "No provider is linked." }));
    };
    const box = h("div", {}, list);
    (async () => {
      let all = [];
      try { all = await providers(); } catch (_) { /* none offered */ }
      for (const p of all) names[p.name] = p.display_name;
      await reload();
      if (!all.length) return;
      const select = h("select", { id: "link-provider", name: "provider" }, all.map((p) => h("option", { value: p.name, text: p.display_name })));
      box.append(form("Link a provider", [
        h("label", { for: "link-provider", text: "Provider" }), select,
        field("Password", { name: "current_password", type: "password", autocomplete: "current-password" }, "Your account's password, if it has one."),
      ], "Link", async (v) => {
        const body = { return_to: OAUTH_LANDING() };
        if (v.current_password) body.current_password = v.current_password;
        const res = await auth(`/v1/oauth/${encodeURIComponent(v.provider)}/link`, { body });
        location.assign(res.authorize_url);
      }));
    })().catch((err) => announce(message(err)));
    return box;
  }

  function signUp() {
    const f = form("Create an account", [
      field("Email", { name: "email", type: "email", autocomplete: "email", required: true }),
      field("Password", { name: "password", type: "password", autocomplete: "new-password", required: true, minlength: 8 }, "At least 8 characters; a long passphrase is best."),
      field("Full name (optional)", { name: "full_name", autocomplete: "name" }),
    ], "Create account", async (v) => {
      const body = { email: v.email, password: v.password };
      if (v.full_name.trim()) body.full_name = v.full_name.trim();
      const res = await auth("/v1/register", { body, bearer: false, cookie: true });
      await signedIn(res.tokens, "Account created. Check your mail for a verification link.");
    });
    show("Create an account", f, h("p", { class: "switch" }, "Have an account? ", h("a", { href: "#signin", text: "Sign in" })));
  }

  function forgot() {
    const done = h("p", { role: "status" });
    const f = form("Reset your password", [
      field("Email", { name: "email", type: "email", autocomplete: "email", required: true }),
    ], "Send reset link", async (v) => {
      await auth("/v1/password/forgot", { body: { email: v.email }, bearer: false });
      done.textContent = "If an account uses this address, a reset link is on its way.";
      announce(done.textContent);
    }, done);
    show("Reset your password", f, h("p", { class: "switch" }, h("a", { href: "#signin", text: "Back to sign in" })));
  }

  // ---------- pages the mail links open: /account/<page>?token=...

  async function accountPage(page, token) {
    // The token leaves the address bar (and history) at once.
    history.replaceState(null, "", "/account/" + page);
    const back = h("p", {}, h("a", { href: "/", text: "Continue to the app" }));
    const result = (ok, text) => h("p", { class: ok ? "" : "error", role: ok ? "status" : "alert", text });
    if (!token) return show("Link incomplete", result(false, "This link has no token. Open the link from the mail again."), back);
    if (page === "reset-password") {
      return show("Choose a new password", form("Choose a new password", [
        field("New password", { name: "new_password", type: "password", autocomplete: "new-password", required: true }, "At least 8 characters. Every signed-in device will be signed out."),
      ], "Set password", async (v) => {
        await auth("/v1/password/reset", { body: { token, new_password: v.new_password }, bearer: false });
        show("Password changed", result(true, "Your password is changed. Sign in with it now."), h("p", {}, h("a", { href: "/#signin", text: "Sign in" })));
      }));
    }
    const [path, title, ok] = page === "verify-email"
      ? ["/v1/email/verify", "Verify your email", "Your email address is verified."]
      : ["/v1/email/change/confirm", "Confirm your new email", "Your email address is changed."];
    show(title, h("p", { text: "One moment…" }));
    try {
      await auth(path, { body: { token }, bearer: false });
      show(title, result(true, ok), back);
    } catch (err) {
      show(title, result(false, message(err)), back);
    }
  }

  // ---------- signed-in screens

  async function tasks() {
    const list = h("ul", { class: "items", "aria-label": "Your tasks" });
    const empty = h("p", { class: "hint", text: "No tasks yet." });
    const base = `/v1/users/${access.userId}/tasks`;
    const render = (items) => {
      empty.hidden = items.length > 0;
      list.replaceChildren(...items.map(item));
    };
    const item = (t) => {
      const id = `t-${t.id}`;
      const box = h("input", { type: "checkbox", id, checked: t.completed, onchange: async () => {
        try {
          await api(`${base}/${t.id}`, { method: "PATCH", body: { completed: box.checked } });
          text.classList.toggle("done", box.checked);
          announce(box.checked ? `Completed: ${t.title}` : `Reopened: ${t.title}`);
        } catch (err) { box.checked = !box.checked; announce(message(err)); }
      } });
      const text = h("label", { for: id, class: "inline" + (t.completed ? " done" : ""), text: t.title });
      return h("li", { "data-task": t.id },
        box,
        h("div", { class: "grow" }, text, t.description ? h("p", { class: "hint", text: t.description }) : null),
        h("button", { type: "button", class: "danger", "aria-label": `Delete ${t.title}`, text: "Delete", onclick: async () => {
          try {
            await api(`${base}/${t.id}`, { method: "DELETE" });
            await reload();
            announce(`Deleted: ${t.title}`);
          } catch (err) { announce(message(err)); }
        } }));
    };
    const reload = async () => render((await api(`${base}?limit=100`)).items);
    const add = form("New task", [
      field("Title", { name: "title", required: true, maxlength: 200 }),
      h("label", { for: "task-desc", text: "Description (optional)" }),
      h("textarea", { id: "task-desc", name: "description", maxlength: 10000 }),
    ], "Add task", async (v, f) => {
      const body = { title: v.title };
      if (v.description.trim()) body.description = v.description;
      await api(base, { method: "POST", body });
      f.reset();
      await reload();
      announce(`Added: ${body.title}`);
      f.querySelector("input").focus();
    });
    show("Your tasks", verifyBanner(), add, h("section", { "aria-label": "Task list" }, list, empty));
    await reload();
  }

  function verifyBanner() {
    if (!me || me.email_verified) return null;
    return h("section", { "aria-label": "Email verification" },
      h("p", {}, h("span", { class: "badge warn", text: "Unverified" }), " ", `Your address ${me.email} is not verified yet.`),
      h("button", { type: "button", class: "secondary", text: "Send the link again", onclick: async () => {
        try { await auth("/v1/email/verify/request"); announce("A new verification link is on its way."); }
        catch (err) { announce(message(err)); }
      } }));
  }

  async function settings() {
    const current = await api("/v1/me/settings");
    const id = "theme";
    const f = form("Preferences", [
      h("label", { for: id, text: "Theme" }),
      h("select", { id, name: "theme" }, ["system", "light", "dark"].map((t) => h("option", { value: t, selected: current.theme === t, text: t }))),
      h("label", { class: "inline" }, h("input", { type: "checkbox", name: "email_notifications", checked: current.email_notifications !== false }), "Email me about task reminders"),
      field("Display name", { name: "full_name", value: me.full_name || "", autocomplete: "name" }, "Shown in the app."),
    ], "Save", async (v) => {
      // Keeps keys this page does not show (other clients may set some).
      const next = { ...current, theme: v.theme, email_notifications: v.email_notifications === "on" };
      await api("/v1/me/settings", { method: "PUT", body: next });
      const name = v.full_name.trim() || null;
      if (name !== (me.full_name || null)) me = await api("/v1/me", { method: "PATCH", body: { full_name: name } });
      Object.assign(current, next);
      announce("Settings saved.");
    });
    show("Settings", f, h("p", { class: "hint" }, "Signed in as ", h("span", { class: "mono", text: me.email }), ` · plan ${me.plan_tier}`));
  }

  async function secrets() {
    const list = h("ul", { class: "items", "aria-label": "Your secrets" });
    const reload = async () => {
      const rows = await api("/v1/me/secrets");
      list.replaceChildren(...rows.map((s) => h("li", {},
        h("div", { class: "grow" }, h("span", { class: "mono", text: s.name }), h("p", { class: "hint", text: s.hint ? `ends in …${s.hint}` : "value hidden" })),
        h("button", { type: "button", class: "danger", "aria-label": `Delete secret ${s.name}`, text: "Delete", onclick: async () => {
          try { await api(`/v1/me/secrets/${encodeURIComponent(s.name)}`, { method: "DELETE" }); await reload(); announce(`Deleted secret ${s.name}.`); }
          catch (err) { announce(message(err)); }
        } }))));
      if (!rows.length) list.append(h("li", { class: "hint", text: "No secrets stored." }));
    };
    const f = form("Store a secret", [
      field("Name", { name: "name", required: true, pattern: "[A-Za-z0-9_.\\-]{1,100}" }, "Letters, digits, _ . - (for example openai_api_key)."),
      field("Value", { name: "value", type: "password", autocomplete: "off", required: true }, "Encrypted at rest; never shown again."),
    ], "Save secret", async (v, form) => {
      await api(`/v1/me/secrets/${encodeURIComponent(v.name)}`, { method: "PUT", body: { value: v.value } });
      form.reset();
      await reload();
      announce(`Saved secret ${v.name}.`);
    });
    show("Secrets", f, h("section", { "aria-label": "Stored secrets" }, list));
    await reload();
  }

  async function security() {
    const authMe = await auth("/v1/me", { method: "GET" });
    const sessions = h("ul", { class: "items", "aria-label": "Signed-in devices" });
    const reloadSessions = async () => {
      const rows = await auth("/v1/sessions", { method: "GET" });
      sessions.replaceChildren(...rows.map((s) => h("li", { "data-session": s.id },
        h("div", { class: "grow" },
          h("span", { text: s.user_agent || "Unknown device" }), s.current ? [" ", h("span", { class: "badge", text: "this device" })] : null,
          h("p", { class: "hint", text: `${s.ip || "unknown address"} · last active ${new Date(s.last_used_at).toLocaleString()}` })),
        s.current ? null : h("button", { type: "button", class: "danger", text: "Sign out", "aria-label": `Sign out session from ${s.ip || "unknown address"}`, onclick: async () => {
          try { await auth(`/v1/sessions/${s.id}`, { method: "DELETE" }); await reloadSessions(); announce("That device is signed out."); }
          catch (err) { announce(message(err)); }
        } }))));
    };
    const everywhere = h("button", { type: "button", class: "danger", text: "Log out everywhere", onclick: async () => {
      try { await endSession("/v1/logout/all"); signedOut("Signed out on every device."); }
      catch (err) { announce(`Not signed out: ${message(err)}`); }
    } });
    const password = form("Change password", [
      field("Current password", { name: "current_password", type: "password", autocomplete: "current-password", required: true }),
      field("New password", { name: "new_password", type: "password", autocomplete: "new-password", required: true }, "Other devices will be signed out."),
    ], "Change password", async (v, f) => {
      await auth("/v1/password/change", { body: v });
      f.reset();
      await reloadSessions();
      announce("Password changed. Other devices are signed out.");
    });
    const email = form("Change email", [
      field("New email", { name: "new_email", type: "email", autocomplete: "email", required: true }),
      field("Password", { name: "password", type: "password", autocomplete: "current-password", required: true }),
    ], "Send confirmation link", async (v, f) => {
      await auth("/v1/email/change", { body: v });
      f.reset();
      announce("Check the new address for a confirmation link.");
    });
    show("Security",
      h("section", { "aria-labelledby": "s-sessions" }, h("h2", { id: "s-sessions", text: "Signed-in devices" }), sessions, everywhere),
      h("h2", { text: "Password" }), password,
      h("h2", { text: "Two-factor sign-in" }), mfaSection(authMe.mfa_enabled),
      h("h2", { text: "Passkeys" }), passkeysSection(),
      h("h2", { text: "Sign-in providers" }), identitiesSection(),
      h("h2", { text: "Email" }), h("p", {}, h("span", { class: "mono", text: authMe.email }), " ", h("span", { class: authMe.email_verified ? "badge" : "badge warn", text: authMe.email_verified ? "verified" : "unverified" })), email);
    await reloadSessions();
  }

  function mfaSection(enabled) {
    const box = h("div", {});
    if (enabled) {
      box.append(h("p", { text: "Two-factor sign-in is on." }), form("Turn off two-factor sign-in", [
        field("Password", { name: "password", type: "password", autocomplete: "current-password", required: true }),
        field("Code", { name: "code", autocomplete: "one-time-code", inputmode: "numeric", required: true }),
      ], "Turn off", async (v) => {
        await auth("/v1/mfa/totp/disable", { body: v });
        announce("Two-factor sign-in is off.");
        box.replaceWith(mfaSection(false));
      }));
      return box;
    }
    box.append(h("p", { text: "Protect your account with a code from an authenticator app." }),
      h("button", { type: "button", class: "secondary", text: "Set up two-factor sign-in", onclick: async (e) => {
        try {
          const setup = await auth("/v1/mfa/totp/setup");
          e.target.remove();
          box.append(
            h("p", {}, "Add this key to your authenticator app: ", h("code", { id: "totp-secret", text: setup.secret })),
            h("p", { class: "hint" }, "Or open: ", h("code", { text: setup.otpauth_uri })),
            form("Confirm two-factor sign-in", [
              field("Code from the app", { name: "code", autocomplete: "one-time-code", inputmode: "numeric", required: true }),
              field("Password", { name: "password", type: "password", autocomplete: "current-password", required: true }),
            ], "Turn on", async (v) => {
              const res = await auth("/v1/mfa/totp/enable", { body: { code: v.code.trim(), password: v.password } });
              box.replaceChildren(
                h("p", { role: "status", text: "Two-factor sign-in is on. Keep these recovery codes somewhere safe; each works once:" }),
                h("ul", { class: "codes", "aria-label": "Recovery codes" }, res.recovery_codes.map((c) => h("li", { text: c }))));
              announce("Two-factor sign-in is on.");
            }));
          box.querySelector("input").focus();
        } catch (err) { announce(message(err)); }
      } }));
    return box;
  }

  // ---------- routing

  const SIGNED_IN = { "#tasks": tasks, "#settings": settings, "#secrets": secrets, "#security": security };
  const SIGNED_OUT = { "#signin": signIn, "#signup": signUp, "#forgot": forgot };

  async function route() {
    const hash = location.hash || (access ? "#tasks" : "#signin");
    for (const a of document.querySelectorAll("#nav a")) {
      if (a.getAttribute("href") === hash) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const view = access ? SIGNED_IN[hash] || tasks : SIGNED_OUT[hash] || signIn;
    try {
      await view();
    } catch (err) {
      if (access) show("Something went wrong", h("p", { class: "error", role: "alert", text: message(err) }));
    }
  }

  async function start() {
    config.authUrl = (await (await fetch("/app/config.json")).json()).auth_url;
    document.getElementById("logout").addEventListener("click", async () => {
      // "Signed out" only once the service said so: a failed logout that
      // looked like success would leave a live session behind.
      try { await endSession("/v1/logout"); signedOut("Signed out."); }
      catch (err) { announce(`Not signed out: ${message(err)} Your session is still active; try again.`); }
    });
    window.addEventListener("hashchange", route);
    if (location.pathname === "/account/oauth" && await oauthLanding()) return;
    const page = location.pathname.match(/^\/account\/(verify-email|reset-password|confirm-email)$/);
    if (page) return accountPage(page[1], new URLSearchParams(location.search).get("token"));
    // A reload: the refresh cookie, if any, brings the session back.
    let live = false;
    try { live = await refresh(); } catch (_) { announce(message(new Error())); }
    if (live) {
      try { return await signedIn(null); }
      catch (err) { announce(message(err)); }
    }
    route();
  }

  start();
})();
