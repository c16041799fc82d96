// Key Vault (RBAC mode) for the HMAC keys events are signed with and the webhook gates' secrets. The
// template creates no secret: their values never pass through a deployment. The app reads them through
// Key Vault references resolved by App Service with the controller's identity (Key Vault Secrets User).

@description('Name of the vault: 3 to 24 letters, digits and hyphens, starting with a letter, unique in Azure.')
@minLength(3)
@maxLength(24)
param name string

param location string
param tags object

@description('Keep deleted secrets recoverable until the retention ends, whoever asks (cannot be turned off once on).')
param enablePurgeProtection bool

@description('Principal id of the controller identity (reads secret values).')
param readerPrincipalId string

@description('Principal id of the person or group who writes the secrets; empty for none.')
param secretsOfficerPrincipalId string

@description('Kind of the secrets officer principal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param secretsOfficerPrincipalType string

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // The service refuses false once it was true; null leaves it off.
    enablePurgeProtection: enablePurgeProtection ? true : null
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, readerPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: readerPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Release controller: resolve the Key Vault references of its app settings.'
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(secretsOfficerPrincipalId)) {
  name: guid(vault.id, secretsOfficerPrincipalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
    principalId: secretsOfficerPrincipalId
    principalType: secretsOfficerPrincipalType
    description: 'Writes the release controller\'s signing keys and webhook secrets.'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
