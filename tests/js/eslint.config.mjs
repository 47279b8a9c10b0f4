// ESLint for the two browser front ends: the jobs page (local_endpoint/page) and the editor
// extension (editor_extension/web). Run by the test command (scripts/ci/test.sh) from
// the packages tests/js pins; their generated contract.js is linted too.
import js from "@eslint/js";
import globals from "globals";

export default [
  js.configs.recommended,
  {
    files: ["local_endpoint/page/**/*.js", "editor_extension/web/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: globals.browser,
    },
    rules: {
      "no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      eqeqeq: ["error", "always", { null: "ignore" }],
      "prefer-const": "error",
      "no-var": "error",
    },
  },
];
