import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig, type Plugin } from 'vite';

const page = (path: string): string => fileURLToPath(new URL(path, import.meta.url));

/**
 * Ships the manifest codegen wrote (src/gql/persisted-documents.json) as
 * dist/persisted-documents.json: the documents this build sends, for a server
 * started with MARK1_TRUSTED_DOCUMENTS=frontend-example/dist/persisted-documents.json.
 */
function persistedDocumentsManifest(): Plugin {
  return {
    name: 'mark1-persisted-documents',
    apply: 'build',
    generateBundle() {
      this.emitFile({
        type: 'asset',
        fileName: 'persisted-documents.json',
        source: readFileSync(page('./src/gql/persisted-documents.json'), 'utf8'),
      });
    },
  };
}

// The Python server serves dist/ at /app/ and dist/graphiql.html for a
// browser's GET /graphql, so every asset URL must be absolute under /app/.
export default defineConfig({
  base: '/app/',
  plugins: [react(), persistedDocumentsManifest()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 8000, // GraphiQL bundles Monaco; it is big and that is fine offline
    rolldownOptions: {
      input: {
        dashboard: page('./index.html'),
        graphiql: page('./graphiql.html'),
        apollo: page('./apollo-example/index.html'),
      },
      onwarn(warning, warn) {
        // GraphiQL's React-compiler hints ("use no memo") mean nothing to a bundle.
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
        warn(warning);
      },
    },
  },
  // Monaco's language workers import each other as ES modules.
  worker: { format: 'es' },
  server: {
    // `npm run dev`: the page runs on Vite, /graphql goes to a running `mark1 serve`.
    proxy: {
      '/graphql': {
        target: process.env.MARK1_URL ?? 'http://127.0.0.1:8000',
        ws: true,
      },
    },
  },
});
