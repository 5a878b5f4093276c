{{/* The chart's name, at most 63 characters (a label value). */}}
{{- define "dbcred-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of the release's objects: the release name when it already says dbcred-operator ("dbcred-operator" gives
the same names as deploy/), else "<release>-dbcred-operator", so that two releases never share a cluster-scoped name.
*/}}
{{- define "dbcred-operator.fullname" -}}
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

{{- define "dbcred-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* What selects the operator's pods; never changes across upgrades (a Deployment's selector is immutable). */}}
{{- define "dbcred-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dbcred-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dbcred-operator.labels" -}}
helm.sh/chart: {{ include "dbcred-operator.chart" . }}
{{ include "dbcred-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dbcred-operator
{{- end }}

{{/* The operator's ServiceAccount as an RBAC subject. */}}
{{- define "dbcred-operator.subject" -}}
- kind: ServiceAccount
  name: {{ include "dbcred-operator.fullname" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{- define "dbcred-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Whether the health port is declared on the container (see healthReusePort in values.yaml). */}}
{{- define "dbcred-operator.declarePort" -}}
{{- if not (and .Values.hostNetwork .Values.healthReusePort) }}true{{ end }}
{{- end }}
