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

{{- define "metrics-registry.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The Secret holding tls.crt and tls.key. */}}
{{- define "metrics-registry.tlsSecret" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- required "tls.secretName is required with tls.mode=secret" .Values.tls.secretName -}}
{{- else -}}
{{- include "metrics-registry.fullname" . }}-serving-cert
{{- end -}}
{{- end -}}

{{/* Names the serving certificate covers: the Service as the aggregator dials it. */}}
{{- define "metrics-registry.dnsNames" -}}
{{- $name := include "metrics-registry.fullname" . -}}
{{- list (printf "%s.%s.svc" $name .Release.Namespace) (printf "%s.%s.svc.cluster.local" $name .Release.Namespace) (printf "%s.%s" $name .Release.Namespace) $name | toJson -}}
{{- end -}}

{{- define "metrics-registry.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "metrics-registry.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}
