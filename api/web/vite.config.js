// Built into dist/, which the API serves: index.html at "/" and the bundle under /static/.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/static/",
  // three.js alone is ~530 kB minified; one bundle is fine for a page served from the same host.
  build: { outDir: "dist", emptyOutDir: true, assetsInlineLimit: 0, chunkSizeWarningLimit: 800 },
});
