{{- define "rg.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rg.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "rg.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "rg.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "rg.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "rg.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "rg.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rg.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rg.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rg.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret the serving certificate lives in, whichever TLS mode. */}}
{{- define "rg.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" }}
{{- required "tls.secret.name is required with tls.mode=secret" .Values.tls.secret.name }}
{{- else }}
{{- printf "%s-tls" (include "rg.fullname" .) }}
{{- end }}
{{- end }}

{{/* The names the API server reaches the Service by: it checks SANs, not the CommonName. */}}
{{- define "rg.dnsNames" -}}
{{- $svc := include "rg.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{- define "rg.configMapNamespace" -}}
{{- default .Release.Namespace .Values.registry.configMap.namespace }}
{{- end }}

{{/* Whether the pods talk to the Kubernetes API (and so get a service account token). */}}
{{- define "rg.needsToken" -}}
{{- or (eq .Values.registry.source "configMap") .Values.events.enabled }}
{{- end }}

{{/* A snapshot source's settings (firestore, bigquery) with the numbers `--set` gives as text
made numbers again. */}}
{{- define "rg.snapshotSource" -}}
{{- $source := deepCopy . }}
{{- range $key, $value := $source }}
{{- if or (hasSuffix "Seconds" $key) (eq $key "maxShrinkFraction") }}{{ $_ := set $source $key (float64 $value) }}{{ end }}
{{- if eq $key "pageSize" }}{{ $_ := set $source $key (int $value) }}{{ end }}
{{- end }}
{{- toYaml $source }}
{{- end }}
