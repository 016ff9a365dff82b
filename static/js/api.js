// The JSON API from the browser: POST with JSON, errors as the service words them.

export class ApiError extends Error {
  constructor(message, status, fields = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.fields = fields; // request fields the service blamed ("text", "forced_prefix", ...)
  }
}

function messageOf(data, response) {
  const detail = data && data.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail.map((d) => (d && d.msg) || String(d)).join(" · ");
  }
  return `The service answered ${response.status} ${response.statusText || ""}`.trim();
}

function fieldsOf(data) {
  const detail = data && data.detail;
  if (!Array.isArray(detail)) return [];
  return detail
    .map((d) => (Array.isArray(d?.loc) ? d.loc.filter((x) => x !== "body")[0] : undefined))
    .filter((x) => typeof x === "string");
}

export async function postJSON(url, body, signal) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(body),
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("Could not reach the attnviz service: is it still running?", 0);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(messageOf(data, response), response.status, fieldsOf(data));
  if (data === null) throw new ApiError("The service sent an answer that is not JSON.", response.status);
  return data;
}
