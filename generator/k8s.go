package generator

// Just enough of the Kubernetes object model to write the control plane,
// with fields in the order kubectl users expect to read them. Marshaled with
// yaml v3, which keeps struct order and sorts map keys, so output is stable.

type typeMeta struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
}

type objectMeta struct {
	Name        string            `yaml:"name,omitempty"`
	Namespace   string            `yaml:"namespace,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

type object struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta `yaml:"metadata"`
	// Exactly one of the following is set, by kind.
	Spec                         any               `yaml:"spec,omitempty"`
	Data                         map[string]string `yaml:"data,omitempty"`
	Rules                        []policyRule      `yaml:"rules,omitempty"`
	RoleRef                      *roleRef          `yaml:"roleRef,omitempty"`
	Subjects                     []subject         `yaml:"subjects,omitempty"`
	AutomountServiceAccountToken *bool             `yaml:"automountServiceAccountToken,omitempty"`
}

type policyRule struct {
	APIGroups     []string `yaml:"apiGroups"`
	Resources     []string `yaml:"resources"`
	ResourceNames []string `yaml:"resourceNames,omitempty"`
	Verbs         []string `yaml:"verbs"`
}

type roleRef struct {
	APIGroup string `yaml:"apiGroup"`
	Kind     string `yaml:"kind"`
	Name     string `yaml:"name"`
}

type subject struct {
	Kind      string `yaml:"kind"`
	APIGroup  string `yaml:"apiGroup,omitempty"`
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace,omitempty"`
}

type deploymentSpec struct {
	Replicas             int             `yaml:"replicas"`
	RevisionHistoryLimit int             `yaml:"revisionHistoryLimit"`
	Selector             labelSelector   `yaml:"selector"`
	Strategy             map[string]any  `yaml:"strategy,omitempty"`
	Template             podTemplateSpec `yaml:"template"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type podTemplateSpec struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     podSpec    `yaml:"spec"`
}

type podSpec struct {
	ServiceAccountName            string             `yaml:"serviceAccountName,omitempty"`
	AutomountServiceAccountToken  *bool              `yaml:"automountServiceAccountToken,omitempty"`
	EnableServiceLinks            *bool              `yaml:"enableServiceLinks,omitempty"`
	SecurityContext               podSecurityContext `yaml:"securityContext"`
	TerminationGracePeriodSeconds int                `yaml:"terminationGracePeriodSeconds,omitempty"`
	Containers                    []container        `yaml:"containers"`
	Volumes                       []volume           `yaml:"volumes,omitempty"`
}

type podSecurityContext struct {
	RunAsNonRoot   bool           `yaml:"runAsNonRoot"`
	RunAsUser      int            `yaml:"runAsUser"`
	RunAsGroup     int            `yaml:"runAsGroup"`
	FSGroup        int            `yaml:"fsGroup"`
	SeccompProfile seccompProfile `yaml:"seccompProfile"`
}

type seccompProfile struct {
	Type string `yaml:"type"`
}

type container struct {
	Name            string                   `yaml:"name"`
	Image           string                   `yaml:"image"`
	ImagePullPolicy string                   `yaml:"imagePullPolicy,omitempty"`
	Command         []string                 `yaml:"command,omitempty"`
	Args            []string                 `yaml:"args,omitempty"`
	Ports           []containerPort          `yaml:"ports,omitempty"`
	ReadinessProbe  *probe                   `yaml:"readinessProbe,omitempty"`
	LivenessProbe   *probe                   `yaml:"livenessProbe,omitempty"`
	Resources       resourceRequirements     `yaml:"resources"`
	SecurityContext containerSecurityContext `yaml:"securityContext"`
	VolumeMounts    []volumeMount            `yaml:"volumeMounts,omitempty"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
	Protocol      string `yaml:"protocol"`
}

type probe struct {
	HTTPGet             httpGet `yaml:"httpGet"`
	InitialDelaySeconds int     `yaml:"initialDelaySeconds,omitempty"`
	PeriodSeconds       int     `yaml:"periodSeconds"`
	TimeoutSeconds      int     `yaml:"timeoutSeconds"`
	FailureThreshold    int     `yaml:"failureThreshold"`
}

type httpGet struct {
	Path string `yaml:"path"`
	Port string `yaml:"port"`
}

type resourceRequirements struct {
	Requests map[string]string `yaml:"requests,omitempty"`
	Limits   map[string]string `yaml:"limits,omitempty"`
}

type containerSecurityContext struct {
	AllowPrivilegeEscalation bool           `yaml:"allowPrivilegeEscalation"`
	Capabilities             capabilities   `yaml:"capabilities"`
	Privileged               bool           `yaml:"privileged"`
	ReadOnlyRootFilesystem   bool           `yaml:"readOnlyRootFilesystem"`
	RunAsNonRoot             bool           `yaml:"runAsNonRoot"`
	SeccompProfile           seccompProfile `yaml:"seccompProfile"`
}

type capabilities struct {
	Drop []string `yaml:"drop"`
}

type volumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	ReadOnly  bool   `yaml:"readOnly,omitempty"`
}

type volume struct {
	Name      string           `yaml:"name"`
	ConfigMap *configMapVolume `yaml:"configMap,omitempty"`
	EmptyDir  *emptyDirVolume  `yaml:"emptyDir,omitempty"`
}

type configMapVolume struct {
	Name string `yaml:"name"`
}

type emptyDirVolume struct {
	SizeLimit string `yaml:"sizeLimit,omitempty"`
}

type serviceSpec struct {
	Type     string            `yaml:"type"`
	Selector map[string]string `yaml:"selector"`
	Ports    []servicePort     `yaml:"ports"`
}

type servicePort struct {
	Name       string `yaml:"name"`
	Port       int    `yaml:"port"`
	TargetPort string `yaml:"targetPort"`
	Protocol   string `yaml:"protocol"`
}

func ptr[T any](v T) *T { return &v }
