// The token: taken once from the page's address (?token=...), then kept in sessionStorage and
// sent as a header on every request (never a cookie, so other sites' requests cannot carry it).
const TOKEN_KEY = "streamswap-token";
(function keepToken() {
  const fromUrl = new URLSearchParams(location.search).get("token");
  if (fromUrl) sessionStorage.setItem(TOKEN_KEY, fromUrl);
})();

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  headers.set("Authorization", "Bearer " + token());
  return fetch(path, { ...options, headers });
}

async function apiJson(path, options = {}) {
  const r = await api(path, options);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.status + " " + r.statusText);
  return body;
}

// Links between the pages carry the token (a page is a GET from the address bar: no header).
function linkPages() {
  for (const a of document.querySelectorAll("a[data-page]")) {
    a.href = a.dataset.page + "?token=" + encodeURIComponent(token());
  }
}
