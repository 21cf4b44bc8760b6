// express-hello: the smallest useful Express service (no database).
const express = require("express");

const app = express();
app.disable("x-powered-by");

app.get("/", (req, res) => {
  res.json({ app: "express-hello", message: "Hello from Express!" });
});

app.get("/health", (req, res) => {
  res.json({ status: "ok" });
});

// Anything else: JSON 404 instead of Express's default HTML page.
app.use((req, res) => {
  res.status(404).json({ error: "not found", path: req.path });
});

module.exports = app;

if (require.main === module) {
  const port = Number(process.env.PORT) || 3000;
  const server = app.listen(port, () => {
    console.log(`express-hello listening on port ${port}`);
  });
  // Let the platform stop us cleanly (ECS/App Runner send SIGTERM).
  process.on("SIGTERM", () => server.close(() => process.exit(0)));
}
