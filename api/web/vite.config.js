// Built into dist/, which the API serves: index.html at "/" and the bundle under /static/.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { defineConfig } from "vite";

// GET /docs (api/routes/docs.py) loads Swagger UI from dist/docs/, copied here from the pinned npm package, so the
// API docs work offline instead of loading from a CDN.
const SWAGGER_FILES = ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"];

function swaggerUiAssets() {
  const dir = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
  return {
    name: "dvd360-swagger-ui-assets",
    generateBundle() {
      for (const name of SWAGGER_FILES) {
        this.emitFile({ type: "asset", fileName: `docs/${name}`, source: readFileSync(join(dir, name)) });
      }
    },
  };
}

export default defineConfig({
  base: "/static/",
  plugins: [swaggerUiAssets()],
  // three.js alone is ~530 kB minified; one bundle is fine for a page served from the same host.
  build: { outDir: "dist", emptyOutDir: true, assetsInlineLimit: 0, chunkSizeWarningLimit: 800 },
});
