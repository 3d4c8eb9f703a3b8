import { describeGrowthOperator } from '@sprout/testkit'
import ligo from './index.js'

describeGrowthOperator(ligo)
