{{/* Name of every object: <release>-novel-engine-operator, or the release name alone when it
already says novel-engine-operator; at most 63 characters. */}}
{{- define "neo.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The metrics Service: a Service name is at most 63 characters, suffix included. */}}
{{- define "neo.metricsServiceName" -}}
{{- printf "%s-metrics" (include "neo.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{/* Selector labels. The name label is fixed: the NetworkPolicies the operator writes let in
the operator's pods by it. */}}
{{- define "neo.selectorLabels" -}}
app.kubernetes.io/name: novel-engine-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "neo.labels" -}}
{{ include "neo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "neo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "neo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "neo.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The operator's permissions: the rules of files/rbac-rules.yaml, generated from the
operator's RBAC_RULES (`make generate`). */}}
{{- define "neo.rbacRules" -}}
{{- (.Files.Get "files/rbac-rules.yaml" | fromYaml).rules | toYaml -}}
{{- end -}}
