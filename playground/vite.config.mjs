// Vite multi-page build for the commerce server's /playground.
//
//   index.html       -> dist/index.html        served at /playground and /playground/
//   shop/index.html  -> dist/shop/index.html   served at /playground/shop and /playground/shop/
//   assets           -> dist/assets/*          served at /playground/assets/*
//
// File names carry no content hash so that the committed dist/ diffs cleanly;
// the build is deterministic (check-dist.sh rebuilds and compares byte for byte).
// The Rust server should therefore send `Cache-Control: no-cache` (with ETag or
// Last-Modified) for these files rather than long-lived immutable caching.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));
const backend = process.env.BACKEND_URL || 'http://127.0.0.1:8000';

export default defineConfig({
  base: '/playground/',
  root: here,
  publicDir: false,
  resolve: {
    // graphql-ws lists "import" before "browser" in its exports, which would pull
    // its server half (and all of graphql-js) into the storefront. Browsers only
    // need the client.
    alias: [{ find: /^graphql-ws$/, replacement: 'graphql-ws/client' }],
  },
  logLevel: 'warn',
  esbuild: {
    jsx: 'automatic',
    legalComments: 'none',
  },
  build: {
    outDir: resolve(here, 'dist'),
    emptyOutDir: true,
    target: 'es2020',
    sourcemap: false,
    minify: 'esbuild',
    cssCodeSplit: true,
    reportCompressedSize: false,
    chunkSizeWarningLimit: 2048,
    // Everything is inlined or bundled locally: no asset may point at another host.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    rollupOptions: {
      input: {
        graphiql: resolve(here, 'index.html'),
        shop: resolve(here, 'shop/index.html'),
      },
      onwarn(warning, warn) {
        // Radix UI ships "use client" directives; they mean nothing in a browser bundle.
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
        warn(warning);
      },
      output: {
        entryFileNames: 'assets/[name].js',
        chunkFileNames: 'assets/[name].js',
        assetFileNames: 'assets/[name][extname]',
        manualChunks(id) {
          if (/[\\/]node_modules[\\/](react|react-dom|scheduler)[\\/]/.test(id)) return 'react';
          if (/[\\/]node_modules[\\/]graphql-ws[\\/]/.test(id)) return 'graphql-ws';
          // CodeMirror 5 and its add-ons (GraphiQL loads them lazily): one file.
          if (/[\\/]node_modules[\\/](codemirror|codemirror-graphql)[\\/]/.test(id)) return 'codemirror';
          return undefined;
        },
      },
    },
  },
  server: {
    // `npm run dev` talks to a locally running server (cargo run --release).
    proxy: {
      '/graphql': { target: backend, ws: true, changeOrigin: true },
    },
  },
  preview: {
    port: 4173,
    strictPort: true,
  },
});
