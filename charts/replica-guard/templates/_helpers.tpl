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

{{/* A copy of `.map` whose keys in `.ranges` are numbers checked against their [min, max]
(`--set x=2.5` arrives as text; the schema has checked that it looks like a number), and whose
keys in `.ints` are whole numbers. A value out of range fails the render in the words of the
binary's own check, naming the key (`.prefix`), so the pods never get a config they refuse. */}}
{{- define "rg.numbers" -}}
{{- $out := deepCopy (default dict .map) }}
{{- range $key, $range := .ranges }}
{{- if hasKey $out $key }}
{{- $v := float64 (index $out $key) }}
{{- if or (lt $v (float64 (index $range 0))) (gt $v (float64 (index $range 1))) }}
{{- fail (printf "%s.%s: must be between %v and %v, got %v" $.prefix $key (index $range 0) (index $range 1) (index $out $key)) }}
{{- end }}
{{- $_ := set $out $key $v }}
{{- end }}
{{- end }}
{{- range $key := default list .ints }}
{{- if hasKey $out $key }}{{ $_ := set $out $key (int (index $out $key)) }}{{ end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* The ranges the binary checks (src/config), shared by the snapshot sources. */}}
{{- define "rg.snapshotRanges" -}}
{{- toYaml (dict "refreshSeconds" (list 1 86400) "timeoutSeconds" (list 0.1 3600) "maxShrinkFraction" (list 0 1)) }}
{{- end }}

{{/* What the binary checks across the entries of registry.file.limits (the schema checks each
field): no two entries for one workload, minReplicas not above maxReplicas, at most
registry.maxEntries entries. `.limits` the limits, `.max` registry.maxEntries. */}}
{{- define "rg.checkLimits" -}}
{{- $entries := default list .limits.entries }}
{{- if gt (len $entries) (int .max) }}
{{- fail (printf "registry.file.limits.entries: %d entries, more than registry.maxEntries (%v)" (len $entries) .max) }}
{{- end }}
{{- $seen := dict }}
{{- range $i, $e := $entries }}
{{- $key := printf "%s/%s" $e.namespace (default "(namespace default)" $e.deployment) }}
{{- if hasKey $seen $key }}
{{- fail (printf "registry.file.limits.entries[%d] (%s): duplicate: an earlier entry has the same namespace and deployment; keep one" $i $key) }}
{{- end }}
{{- $_ := set $seen $key true }}
{{- if and (hasKey $e "minReplicas") (gt (int $e.minReplicas) (int $e.maxReplicas)) }}
{{- fail (printf "registry.file.limits.entries[%d] (%s): minReplicas %v is above maxReplicas %v" $i $key $e.minReplicas $e.maxReplicas) }}
{{- end }}
{{- end }}
{{- with .limits.default }}
{{- if and (hasKey . "minReplicas") (gt (int .minReplicas) (int .maxReplicas)) }}
{{- fail (printf "registry.file.limits.default: minReplicas %v is above maxReplicas %v" .minReplicas .maxReplicas) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
"true" when the backstop policy is rendered: backstop.enabled, on a cluster that serves
ValidatingAdmissionPolicy v1 (GA since 1.30: discovery says so on install; `helm template`
without --api-versions knows only the Kubernetes version). Its parameters are written by the
continuous audit: with audit.enabled=false there is no backstop (and the webhook fails closed).
*/}}
{{- define "rg.backstop" -}}
{{- $served := or (.Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy") (semverCompare ">=1.30-0" .Capabilities.KubeVersion.Version) -}}
{{- if and .Values.backstop.enabled $served .Values.audit.enabled -}}
true
{{- end -}}
{{- end -}}

{{/* The webhook's failurePolicy: as set, else Ignore with the backstop (it enforces meanwhile) and Fail without. */}}
{{- define "rg.failurePolicy" -}}
{{- if .Values.webhook.failurePolicy -}}
{{- .Values.webhook.failurePolicy -}}
{{- else if include "rg.backstop" . -}}
Ignore
{{- else -}}
Fail
{{- end -}}
{{- end -}}

{{/*
The one scope of replica-guard (README "Scope"): what the API server sends to the webhook and
what the backstop policy judges, rendered from here into the ValidatingWebhookConfiguration, the
policy and its binding, and the config of the audit pod (which writes the policy's parameters
only for namespaces in it). A YAML map:
  namespaceSelector  leaves out kube-system, kube-public, kube-node-lease, the release namespace,
                     webhook.excludeNamespaces, policy.exemptions.namespaces (with skipExempt)
                     and every namespace labelled webhook.optOutLabel (any value)
  objectSelector     webhook.objectSelector, when set
  matchConditions    with skipExempt, policy.exemptions' users and groups; then
                     webhook.matchConditions
*/}}
{{- define "rg.scope" -}}
{{- $skipped := concat (list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace) .Values.webhook.excludeNamespaces }}
{{- $conditions := list }}
{{- if .Values.webhook.skipExempt }}
{{- $skipped = concat $skipped .Values.policy.exemptions.namespaces }}
{{- with .Values.policy.exemptions.users }}
{{- $conditions = append $conditions (dict "name" "not-exempt-user" "expression" (printf "!(request.userInfo.username in %s)" (toJson .))) }}
{{- end }}
{{- with .Values.policy.exemptions.groups }}
{{- $conditions = append $conditions (dict "name" "not-exempt-group" "expression" (printf "!(has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in %s))" (toJson .))) }}
{{- end }}
{{- end }}
{{- $conditions = concat $conditions .Values.webhook.matchConditions }}
{{- $expressions := list (dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" ($skipped | uniq)) (dict "key" .Values.webhook.optOutLabel "operator" "DoesNotExist") }}
{{- $scope := dict "namespaceSelector" (dict "matchExpressions" $expressions) }}
{{- with .Values.webhook.objectSelector }}
{{- $_ := set $scope "objectSelector" . }}
{{- end }}
{{- with $conditions }}
{{- $_ := set $scope "matchConditions" . }}
{{- end }}
{{- toYaml $scope }}
{{- end }}

{{/*
How much a counter grew over a range, counting a series born within it: the pods' counters with
labels (a workload's violations, a reason's failures) and the API server's come into being at 1
with their first event, which increase() alone reads as no increase. A new series counts with its
value; an older one with its increase. Arguments: (list SELECTOR RANGE).
*/}}
{{- define "rg.grew" -}}
({{ index . 0 }} unless {{ index . 0 }} offset {{ index . 1 }}) or increase({{ index . 0 }}[{{ index . 1 }}])
{{- end -}}
