{{/*
Names. With the release called "tenantdb" (as the README installs it) the objects get the same
names as deploy/: tenantdb-operator, tenantdb-pooler-agent, ...
*/}}
{{- define "tenantdb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tenantdb.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tenantdb.operatorName" -}}
{{- printf "%s-operator" (include "tenantdb.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tenantdb.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tenantdb.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tenantdb.metricsServiceName" -}}
{{- printf "%s-metrics" (include "tenantdb.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tenantdb.poolerName" -}}
{{- printf "%s-pgbouncer" (include "tenantdb.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tenantdb.agentName" -}}
{{- printf "%s-pooler-agent" (include "tenantdb.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret the operator renders the pooler config into, and the agent watches. */}}
{{- define "tenantdb.poolerConfigSecret" -}}
{{- default (printf "%s-pooler" .Values.pooler.postgresServer) .Values.pooler.configSecret }}
{{- end }}

{{- define "tenantdb.poolerAdminSecret" -}}
{{- default (printf "%s-pooler-admin" (include "tenantdb.fullname" .)) .Values.pooler.admin.existingSecret }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "tenantdb.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "tenantdb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tenantdb
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component (operator, pgbouncer). Call with (dict "ctx" $ "component" "operator"). */}}
{{- define "tenantdb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tenantdb.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* An image reference from {registry, repository, tag, digest}; the tag defaults to the appVersion. */}}
{{- define "tenantdb.image" -}}
{{- $repo := .image.repository }}
{{- if .image.registry }}{{ $repo = printf "%s/%s" .image.registry .image.repository }}{{ end }}
{{- $tag := .image.tag | default .appVersion | toString }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" $repo $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{- define "tenantdb.operatorImage" -}}
{{- include "tenantdb.image" (dict "image" .Values.image "appVersion" .Chart.AppVersion) }}
{{- end }}

{{- define "tenantdb.poolerImage" -}}
{{- include "tenantdb.image" (dict "image" .Values.pooler.image "appVersion" .Chart.AppVersion) }}
{{- end }}
