const { test, before, after } = require("node:test");
const assert = require("node:assert");

const app = require("../server");

let server;
let baseUrl;

before(async () => {
  server = app.listen(0, "127.0.0.1");
  await new Promise((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
  baseUrl = `http://127.0.0.1:${server.address().port}`;
});

after(async () => {
  await new Promise((resolve) => server.close(resolve));
});

test("GET / greets", async () => {
  const res = await fetch(`${baseUrl}/`);
  assert.strictEqual(res.status, 200);
  const body = await res.json();
  assert.strictEqual(body.app, "express-hello");
  assert.match(body.message, /Hello/);
});

test("GET /health reports ok", async () => {
  const res = await fetch(`${baseUrl}/health`);
  assert.strictEqual(res.status, 200);
  assert.deepStrictEqual(await res.json(), { status: "ok" });
});

test("unknown paths return a JSON 404", async () => {
  const res = await fetch(`${baseUrl}/no-such-page`);
  assert.strictEqual(res.status, 404);
  assert.deepStrictEqual(await res.json(), { error: "not found", path: "/no-such-page" });
});
