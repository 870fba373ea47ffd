{{- define "metrics-registry.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "metrics-registry.labels" -}}
app.kubernetes.io/name: metrics-registry
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "metrics-registry.selector" -}}
app.kubernetes.io/name: metrics-registry
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
