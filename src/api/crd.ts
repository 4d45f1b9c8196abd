import { z } from 'zod';
import { GROUP, VERSION } from './common.js';
import type { KindInfo } from './kinds.js';

type Json = { [key: string]: unknown };

/**
 * Turns zod's OpenAPI output into a structural schema the API server accepts: no $schema, no
 * additionalProperties beside properties, no uniqueItems; `description` kept everywhere.
 */
function structural(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(structural);
  if (node === null || typeof node !== 'object') return node;
  const out: Json = {};
  for (const [key, value] of Object.entries(node as Json)) {
    if (key === '$schema' || key === 'uniqueItems' || key === 'id') continue;
    if (key === 'additionalProperties' && 'properties' in (node as Json)) continue;
    if (key === 'pattern' && typeof value === 'string') {
      out[key] = value;
      continue;
    }
    out[key] = structural(value);
  }
  return out;
}

export function openApiSchema(schema: z.ZodType): Json {
  return structural(z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input', unrepresentable: 'throw' })) as Json;
}

export function buildCrd(k: KindInfo): Json {
  const schema = {
    type: 'object',
    description: k.description,
    properties: {
      apiVersion: { type: 'string', description: 'The versioned schema of this object.' },
      kind: { type: 'string', description: 'The REST resource this object represents.' },
      metadata: { type: 'object' },
      spec: openApiSchema(k.spec),
      status: openApiSchema(k.status),
    },
    required: ['spec'],
  };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${k.plural}.${GROUP}`, labels: { 'app.kubernetes.io/part-of': 'tenantdb' } },
    spec: {
      group: GROUP,
      scope: k.namespaced ? 'Namespaced' : 'Cluster',
      names: {
        kind: k.kind,
        listKind: `${k.kind}List`,
        plural: k.plural,
        singular: k.singular,
        shortNames: k.shortNames,
        categories: ['tenantdb'],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: k.printerColumns,
          schema: { openAPIV3Schema: schema },
        },
      ],
    },
  };
}
