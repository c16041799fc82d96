// What the controller's identity may do in one resource group of target web apps: the custom
// "App Service Release Controller" role (infra/release-controller-role.json), and Monitoring Reader
// only if asked for. Deployed once per target resource group, with scope: resourceGroup(sub, name).

@description('Principal id of the controller identity.')
param principalId string

@description('Name (a GUID) of the role to assign: the custom release-controller role created from release-controller-role.json.')
param roleDefinitionId string

@description('Also assign Monitoring Reader. The custom role already allows Microsoft.Insights/metrics/read, all the azureMonitor provider reads; turn this on only if the role you assign lacks it.')
param assignMonitoringReader bool

var monitoringReader = '43d0d8ad-25c7-4714-9337-8ba259a9fe05'

resource releaseController 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleDefinitionId)
  properties: {
    // A custom role is a subscription-level definition; it must list this subscription among its
    // AssignableScopes.
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Release controller: deploy to staging slots, shift traffic, swap, read metrics.'
  }
}

resource metricsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (assignMonitoringReader) {
  name: guid(resourceGroup().id, principalId, monitoringReader)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Release controller: read the slots\' platform metrics (azureMonitor analysis provider).'
  }
}
