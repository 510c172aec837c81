{{/* vim: set filetype=mustache: */}}
{{/*
The chart name, or nameOverride. It is the value of app.kubernetes.io/name.
*/}}
{{- define "kiu.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
A fully qualified name for namespaced objects: the release name when it already
contains the chart name, else "<release>-<chart>". Truncated to 63 characters (DNS
label) leaving room for the component suffixes added below.
*/}}
{{- define "kiu.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<name>-<version>" for the helm.sh/chart label. */}}
{{- define "kiu.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Names of the two components' namespaced objects. */}}
{{- define "kiu.operator.fullname" -}}
{{- printf "%s-operator" (include "kiu.fullname" .) -}}
{{- end -}}
{{- define "kiu.gateway.fullname" -}}
{{- printf "%s-gateway" (include "kiu.fullname" .) -}}
{{- end -}}

{{/*
Cluster-scoped objects (ClusterRoles and their bindings) carry the release namespace
in their name, so two releases of the same name in different namespaces never collide.
*/}}
{{- define "kiu.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "kiu.fullname" .) -}}
{{- end -}}

{{/*
Selector labels: immutable in a Deployment, so never anything that changes with an
upgrade. Call with (dict "context" $ "component" "operator").
*/}}
{{- define "kiu.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kiu.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
The standard labels of every object: selector labels plus chart, version, manager,
part-of and the user's commonLabels. Call with (dict "context" $ "component" "...").
*/}}
{{- define "kiu.labels" -}}
helm.sh/chart: {{ include "kiu.chart" .context }}
{{ include "kiu.selectorLabels" . }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: kiu
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
{{- with .context.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The kiu image: repository@digest when a digest is given, else repository:tag with the
tag defaulting to the chart's appVersion.
*/}}
{{- define "kiu.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* ServiceAccount names. */}}
{{- define "kiu.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "kiu.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}
{{- define "kiu.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create -}}
{{- default (include "kiu.gateway.fullname" .) .Values.gateway.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.gateway.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The label selector (as a string) the operator finds this release's gateway pods by,
to scrape their demand counters.
*/}}
{{- define "kiu.gateway.selectorString" -}}
{{- $labels := include "kiu.selectorLabels" (dict "context" . "component" "gateway") | fromYaml -}}
{{- $pairs := list -}}
{{- range $key := keys $labels | sortAlpha -}}
{{- $pairs = append $pairs (printf "%s=%s" $key (get $labels $key)) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/* The name of the Secret holding the access keys the chart creates. */}}
{{- define "kiu.accessKeys.secretName" -}}
{{- printf "%s-access-key" (include "kiu.fullname" .) -}}
{{- end -}}

{{/*
The Secret of one access key: (list context keyName).
*/}}
{{- define "kiu.accessKeys.keySecretName" -}}
{{- printf "%s-%s" (include "kiu.accessKeys.secretName" (index . 0)) (index . 1) | trunc 253 -}}
{{- end -}}

{{/*
The access-key Secrets the gateway reads by name, as a JSON list: one per key the
chart creates, then gateway.auth.accessKeySecrets. Unused with discoverAccessKeys.
*/}}
{{- define "kiu.gateway.accessKeySecrets" -}}
{{- $names := list }}
{{- if .Values.accessKeys.create }}
{{- range $key := .Values.accessKeys.keys }}
{{- $names = append $names (include "kiu.accessKeys.keySecretName" (list $ $key.name)) }}
{{- end }}
{{- end }}
{{- concat $names .Values.gateway.auth.accessKeySecrets | uniq | toJson }}
{{- end -}}

{{/*
Pod-level security context: restricted Pod Security Standard (non-root, seccomp
RuntimeDefault), merged over by podSecurityContext.
*/}}
{{- define "kiu.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{/* Container-level security context: no privilege escalation, no capabilities, read-only root. */}}
{{- define "kiu.securityContext" -}}
{{- toYaml .Values.securityContext -}}
{{- end -}}

{{/*
The gateway's TLS Secret (tls.crt, tls.key): the one named in gateway.tls.secretName,
else "<fullname>-gateway-tls", which the chart fills (cert-manager or self-signed).
*/}}
{{- define "kiu.gateway.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "kiu.gateway.fullname" .)) .Values.gateway.tls.secretName -}}
{{- end -}}
