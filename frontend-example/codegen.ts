import type { CodegenConfig } from '@graphql-codegen/cli';

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
      presetConfig: { fragmentMasking: false },
      config: {
        scalars: { DateTime: 'string', JSON: 'unknown', ID: 'string' },
        // Runtime values too: the dashboard lists EventType's members as filter chips.
        enumType: 'const',
        // urql's and Apollo's caches add __typename to every selection set at run time.
        nonOptionalTypename: true,
        useTypeImports: true,
        strictScalars: true,
      },
    },
  },
};

export default config;
