import { describeGrowthOperator } from '@sprout/testkit'
import upcycle from './index.js'

describeGrowthOperator(upcycle)
