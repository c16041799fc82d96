// Azure Monitor alerts on the controller's own alerts. The controller raises an alert (a release rolled
// back, failed, paused as inconclusive, a rollback held up) by logging it through its notifier
// (shared/bootstrap.py LoggingNotifier): one log line "ALERT <severity>: <message>", at error level for
// severity "error" and at warning level for "warning". The Functions host sends those lines to Application
// Insights as traces; these log search rules fire on them, one rule per severity.

param location string
param tags object

@description('Prefix of the rule names.')
param baseName string

@description('Resource id of the Application Insights component the host logs to.')
param appInsightsId string

@description('E-mail addresses to notify; an action group is created for them when not empty.')
param emailAddresses array

@description('Resource ids of existing action groups to notify as well.')
param actionGroupIds array

var rules = [
  {
    key: 'error'
    displayName: 'Release controller: release failed or could not be restored'
    description: 'The release controller raised an error alert: a release is in a state only a person can resolve (failed, its site held). Read the release\'s audit (GET /api/releases/{id}/audit).'
    severity: 1
    prefix: 'ALERT error: '
  }
  {
    key: 'warning'
    displayName: 'Release controller: release rolled back, paused or held up'
    description: 'The release controller raised a warning alert: a release rolled back, paused as inconclusive, or its rollback is held up by the platform.'
    severity: 2
    prefix: 'ALERT warning: '
  }
]

resource emailGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(emailAddresses)) {
  name: 'ag-${baseName}-alerts'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: take('${baseName}alerts', 12)
    enabled: true
    emailReceivers: [
      for (address, i) in emailAddresses: {
        name: 'email-${i}'
        emailAddress: address
        useCommonAlertSchema: true
      }
    ]
  }
}

var notify = concat(actionGroupIds, empty(emailAddresses) ? [] : [emailGroup.id])

resource controllerAlerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: 'alert-${baseName}-${rule.key}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        appInsightsId
      ]
      evaluationFrequency: 'PT5M'
      windowSize: 'PT5M'
      criteria: {
        allOf: [
          {
            // The traces table of the component (classic schema when the rule is scoped to it). Not
            // filtered by category: the message is what the notifier guarantees.
            query: 'traces | where message startswith "${rule.prefix}" | project timestamp, message, severityLevel, operation_Name, cloud_RoleInstance'
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      // Every window with an alert line notifies again: each line is a different release event.
      autoMitigate: false
      actions: {
        actionGroups: notify
        customProperties: {
          source: 'release-controller'
        }
      }
    }
  }
]

// The controller's own health: reconciles or work messages failing, storage out, a bad configuration,
// notifications given up, messages poisoned. Any of these for 15 minutes means releases may be stuck.
resource healthAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${baseName}-health'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Release controller: the controller itself is failing'
    description: 'Reconciles, work messages, storage or notifications keep failing, or the app is misconfigured: releases may be stuck. See docs/operations.md (the controller\'s own health).'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message has_any ("not reconciled:", "work message not sent:", "storage unavailable:", "the controller is misconfigured:", "gave up on the") | project timestamp, message, severityLevel, operation_Name, cloud_RoleInstance'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 2
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: notify
      customProperties: {
        source: 'release-controller'
      }
    }
  }
}

output ruleIds array = concat([for (rule, i) in rules: controllerAlerts[i].id], [healthAlert.id])
