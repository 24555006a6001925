// Calls to /api/v1 with the session cookie. State-changing calls carry the page's
// CSRF token; a problem+json answer becomes an ApiError whose message is its detail.

export const csrfToken = document.querySelector('meta[name="csrf-token"]').content;

export class ApiError extends Error {
  constructor(status, message, type) {
    super(message);
    this.status = status;
    this.type = type || "";
  }

  get slug() {
    return this.type.split("/").pop();
  }
}

const SAFE = new Set(["GET", "HEAD"]);

export function apiUrl(path, query = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url;
}

export async function api(method, path, { json, query, headers } = {}) {
  const init = {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json", ...(headers || {}) },
  };
  if (!SAFE.has(method)) init.headers["X-CSRF-Token"] = csrfToken;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(apiUrl(path, query), init);
  } catch {
    throw new ApiError(0, "The server could not be reached. Check your connection and try again.");
  }
  if (response.status === 401) {
    // The session ended (signed out elsewhere, expired, revoked): sign in again.
    location.assign("/web/login");
    throw new ApiError(401, "Your session has ended. Signing in again…");
  }
  if (!response.ok) throw await problemOf(response);
  if (response.status === 204) return null;
  return response.json();
}

export async function problemOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const detail = body && (body.detail || body.title);
  return new ApiError(
    response.status,
    detail || `The server answered ${response.status}.`,
    body && body.type,
  );
}

// Every item of a cursor-paged listing.
export async function allPages(path, key, query = {}) {
  const items = [];
  let cursor = null;
  do {
    const page = await api("GET", path, { query: { ...query, cursor } });
    items.push(...page[key]);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

export function contentUrl(entryId, rev) {
  const path = `/api/v1/files/${encodeURIComponent(entryId)}/content`;
  return rev ? `${path}?rev=${encodeURIComponent(rev)}` : path;
}

// Save a file (or one of its versions) through the browser's own download.
export function download(entryId, name, rev) {
  const link = document.createElement("a");
  link.href = contentUrl(entryId, rev);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
}

// -- paths and formatting ----------------------------------------------------------------

export function joinPath(folder, name) {
  return folder === "/" ? `/${name}` : `${folder}/${name}`;
}

export function parentOf(path) {
  const cut = path.lastIndexOf("/");
  return cut <= 0 ? "/" : path.slice(0, cut);
}

export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatTime(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return new Date(seconds * 1000).toLocaleString(undefined, {
    dateStyle: "medium",
    timeStyle: "short",
  });
}

export function describeClient(client) {
  if (!client) return "";
  if (client === "web") return "Web";
  if (client === "api_key") return "API key";
  if (client === "oauth") return "App";
  if (client === "mtls") return "Certificate";
  const [product, version] = client.split("/");
  if (product === "dropline-agent") return version ? `Desktop ${version}` : "Desktop";
  return client;
}
