// Monaco's workers, bundled by Vite from npm (no CDN). The same as
// `graphiql/setup-workers/vite`, but as our own source: Vite's dev server
// cannot pre-bundle that module's `?worker` imports, while it handles them
// here in development and in the build alike.
import EditorWorker from 'monaco-editor/esm/vs/editor/editor.worker.js?worker';
import JsonWorker from 'monaco-editor/esm/vs/language/json/json.worker.js?worker';
import GraphQLWorker from 'monaco-graphql/esm/graphql.worker.js?worker';
import type {} from 'monaco-editor'; // declares the global MonacoEnvironment

window.MonacoEnvironment = {
  getWorker(_workerId, label) {
    switch (label) {
      case 'json':
        return new JsonWorker();
      case 'graphql':
        return new GraphQLWorker();
      default:
        return new EditorWorker();
    }
  },
};
