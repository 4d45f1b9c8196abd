import { stringify } from 'yaml';
import { buildCrd } from './crd.js';
import { KINDS } from './kinds.js';

const HEADER = '# Generated from src/api by `npm run generate`. Do not edit.\n';

/** The CRD files as they are committed in crds/: one per kind. */
export function renderCrdFiles(): Record<string, string> {
  return Object.fromEntries(KINDS.map((k) => [`${k.plural}.yaml`, HEADER + stringify(buildCrd(k), { lineWidth: 0 })]));
}

/**
 * The same CRDs as Helm templates (charts/tenantdb/templates/crds/): rendered when crds.enabled, so
 * `helm upgrade` upgrades them (Helm never touches files in a chart's crds/ after the first
 * install), with the chart's labels, and kept on uninstall when crds.keep.
 */
export function renderChartCrdTemplates(): Record<string, string> {
  return Object.fromEntries(
    KINDS.map((k) => {
      const crd = buildCrd(k) as { apiVersion: string; kind: string; metadata: { name: string }; spec: unknown };
      const head = stringify({ apiVersion: crd.apiVersion, kind: crd.kind }, { lineWidth: 0 });
      const body = stringify({ spec: crd.spec }, { lineWidth: 0 });
      // Template delimiters inside the schema (a description, a CEL rule) would be read by Helm.
      if (body.includes('{{') || body.includes('}}')) throw new Error(`the ${k.kind} CRD holds a Helm template delimiter`);
      const meta = [
        'metadata:',
        `  name: ${crd.metadata.name}`,
        '  labels:',
        '    {{- include "tenantdb.labels" . | nindent 4 }}',
        '  {{- if .Values.crds.keep }}',
        '  annotations:',
        '    helm.sh/resource-policy: keep',
        '  {{- end }}',
        '',
      ].join('\n');
      return [`${k.plural}.yaml`, `${HEADER}{{- if .Values.crds.enabled }}\n${head}${meta}${body}{{- end }}\n`];
    }),
  );
}
