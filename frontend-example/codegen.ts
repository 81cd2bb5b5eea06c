import type { CodegenConfig } from '@graphql-codegen/cli';
import { addTypenameSelectionDocumentTransform } from '@graphql-codegen/client-preset';

// The schema is the one the server prints (`mark1 export-schema` →
// ../schema.graphql), so a server change that breaks an operation below
// fails `npm run typecheck`. MARK1_SCHEMA overrides it (e.g. a draft).
const schema = process.env.MARK1_SCHEMA ?? '../schema.graphql';

const config: CodegenConfig = {
  schema,
  documents: ['src/**/*.{ts,tsx}', '!src/gql/**/*'],
  ignoreNoDocuments: false,
  generates: {
    'src/gql/': {
      preset: 'client',
      presetConfig: {
        fragmentMasking: false,
        // Writes src/gql/persisted-documents.json ({"sha256:<hex>": document}) and gives each
        // document its id as `__meta__.hash`: the dashboard sends ids, not documents, and
        // the build ships the manifest as dist/persisted-documents.json, which a server
        // can run with MARK1_TRUSTED_DOCUMENTS (README: Persisted and trusted documents).
        persistedDocuments: true,
      },
      // The documents as urql's and Apollo's caches send them (with __typename), so the
      // manifest's texts are what the clients expect back.
      documentTransforms: [addTypenameSelectionDocumentTransform],
      config: {
        scalars: { DateTime: 'string', JSON: 'unknown', ID: 'string' },
        // Runtime values too: the dashboard lists EventType's members as filter chips.
        enumType: 'const',
        // Every selection set has __typename (the transform above adds it).
        nonOptionalTypename: true,
        useTypeImports: true,
        strictScalars: true,
      },
    },
  },
};

export default config;
